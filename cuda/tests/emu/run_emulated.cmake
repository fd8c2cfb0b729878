# Runs one emulated test: cmake -DPROGRAM=... -DSCHEDULE=forward|reverse|random:SEED -DDRIVER_DIR=... [-DDEVICES=0]
#   [-DSEED=N] -P run_emulated.cmake
# DRIVER_DIR holds the emulated driver (libcuda.so.1), found before the system's through LD_LIBRARY_PATH.
# Sets the emulator's schedule and checks, runs the program, and fails on any exit but 0; a CUDA test's "skipped, no
# device" (77) is a failure here, since the emulated device must always be found.
set(ENV{NE_EMU_SCHEDULE} "${SCHEDULE}")
set(ENV{LD_LIBRARY_PATH} "${DRIVER_DIR}:$ENV{LD_LIBRARY_PATH}")
set(ENV{NE_EMU_LEAKS} fail)
set(ENV{NE_TEST_QUICK} 1)  # the CUDA tests' shorter runs (each kernel path stays)
set(ENV{NE_ARENA_GUARD} 1)  # guards after every slice of the models' arenas, checked after every kernel call
if(DEFINED DEVICES)
  set(ENV{NE_EMU_DEVICES} "${DEVICES}")
endif()
if(DEFINED SEED)
  set(ENV{NE_EMU_SEED} "${SEED}")
endif()
set(ENV{ASAN_OPTIONS} "abort_on_error=1:detect_leaks=1:strict_string_checks=1:check_initialization_order=1")
set(ENV{UBSAN_OPTIONS} "print_stacktrace=1:halt_on_error=1")
message(STATUS "emulated CUDA device (CPU), schedule ${SCHEDULE}: ${PROGRAM}")
execute_process(COMMAND "${PROGRAM}" RESULT_VARIABLE status)
if(status EQUAL 77)
  message(FATAL_ERROR "the emulated CUDA device was not found (exit 77): the emulated plugin did not load")
elseif(NOT status EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} under schedule ${SCHEDULE}: ${status}")
endif()
