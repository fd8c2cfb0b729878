#!/usr/bin/env bash
# Every GPU check in one command, for the day a machine with an NVIDIA GPU is at hand: one with nvcc, CMake and
# Python with PyTorch, but no .NET SDK (the managed parts travel in a kit made beforehand).
#
#   bench/gpu-check.sh kit                  on a machine with the .NET SDK: packs out/gpu-kit/ (the runner and the
#                                           NUnit test app, framework-dependent, and the .NET runtime they run on,
#                                           xz-compressed), small enough to travel with the repository
#   bench/gpu-check.sh run [--out DIR] [--only STEP,...] [--seconds S]
#                                           on the GPU machine: builds for that GPU, runs every native test with none
#                                           ignored, compute-sanitizer (memcheck, racecheck, synccheck, initcheck)
#                                           on the parity tests, the NUnit suite on the CUDA backend, `bench all`
#                                           with the PyTorch peers on the GPU, and Nsight Systems profiles of a toy
#                                           sweep and a factorize run; every log and JSON lands in DIR
#                                           (default out/gpu-check/GPU-DATE), with summary.txt listing each step's
#                                           outcome and time. Steps: build native sanitize nunit bench profile.
#
# Exit codes: 0 every step passed; 1 a step failed (summary.txt says which); 2 usage; 3 no NVIDIA GPU or a tool it
# needs is missing (the message says which). Planned to finish within 8 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
kit="$root/out/gpu-kit"
steps_all=(build native sanitize nunit bench profile)

usage() {
  sed -n '4,18p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

fail_setup() {
  echo "gpu-check: $*" >&2
  exit 3
}

# The runner and the test app, unpacked once per run from the kit.
managed=/tmp/gpu-check-managed
unpack_managed() {
  rm -rf "$managed" && mkdir -p "$managed" && tar -C "$managed" -xJf "$kit/managed.tar.xz"
}

make_kit() {
  command -v dotnet >/dev/null || fail_setup "the kit is made where the .NET SDK is: dotnet is not on PATH"
  rm -rf "$kit"
  mkdir -p "$kit"
  echo "gpu-check kit: publishing the runner and the test app (framework-dependent, linux-x64)"
  local staging="$kit/managed"
  # One runtime identifier: without it every package's native assets for every platform travel (ONNX Runtime alone
  # brings 300 MiB of android, ios, osx and windows libraries).
  dotnet publish src/Runner -c Release -r linux-x64 -o "$staging/runner" --no-self-contained -p:NeSkipNativeBuild=true \
    -v quiet -nologo || { echo "gpu-check kit: publishing src/Runner failed" >&2; exit 1; }
  dotnet publish tests/NativeEngine.Tests -c Release -r linux-x64 -o "$staging/tests" --no-self-contained \
    -p:NeSkipNativeBuild=true -v quiet -nologo || { echo "gpu-check kit: publishing tests/NativeEngine.Tests failed" >&2; exit 1; }
  # The native libraries are built on the GPU machine, for its GPU: none travel.
  rm -f "$staging"/runner/libnativeengine*.so "$staging"/tests/libnativeengine*.so
  # Files the two folders share are hard links, which tar stores once.
  local file
  for file in "$staging"/tests/*; do
    [ -f "$file" ] && [ -f "$staging/runner/${file##*/}" ] && cmp -s "$file" "$staging/runner/${file##*/}" \
      && ln -f "$staging/runner/${file##*/}" "$file"
  done
  tar -C "$staging" -cJf "$kit/managed.tar.xz" runner tests \
    || { echo "gpu-check kit: packing the runner and the test app failed" >&2; exit 1; }
  rm -rf "$staging"
  local dotnet_root version
  dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
  version=$(dotnet --list-runtimes | sed -nE 's/^Microsoft\.NETCore\.App ([0-9.]+) .*/\1/p' | sort -V | tail -1)
  [ -n "$version" ] || { echo "gpu-check kit: no Microsoft.NETCore.App runtime found by dotnet --list-runtimes" >&2; exit 1; }
  echo "gpu-check kit: packing the .NET runtime $version from $dotnet_root"
  tar -C "$dotnet_root" -cJf "$kit/dotnet-runtime.tar.xz" dotnet host "shared/Microsoft.NETCore.App/$version" \
    || { echo "gpu-check kit: packing the runtime failed" >&2; exit 1; }
  local bytes
  bytes=$(du -sb "$kit" | cut -f1)
  echo "gpu-check kit: $kit is $((bytes / 1048576)) MiB"
  # What travels to a lent GPU machine is at most 64 MiB, the repository included.
  if [ "$bytes" -gt $((56 * 1048576)) ]; then
    echo "gpu-check kit: $((bytes / 1048576)) MiB is more than the 56 MiB the kit may take" >&2
    exit 1
  fi
}

out=""
only=""
seconds=5
command=${1:-}
[ -n "$command" ] || usage
shift
case "$command" in
  kit)
    [ $# -eq 0 ] || usage
    make_kit
    exit $?
    ;;
  run) ;;
  -h | --help | help) usage ;;
  *)
    echo "gpu-check: unknown command '$command'; valid: kit, run" >&2
    usage
    ;;
esac
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:-}; [ -n "$out" ] || usage; shift 2 ;;
    --only) only=${2:-}; [ -n "$only" ] || usage; shift 2 ;;
    --seconds) seconds=${2:-}; [[ "$seconds" =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage; shift 2 ;;
    *) echo "gpu-check: unknown option '$1'" >&2; usage ;;
  esac
done
if [ -n "$only" ]; then
  for step in ${only//,/ }; do
    [[ " ${steps_all[*]} " == *" $step "* ]] || { echo "gpu-check: unknown step '$step'; valid: ${steps_all[*]}" >&2; exit 2; }
  done
fi
wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

# ---- the machine ------------------------------------------------------------------------------------------------
command -v nvidia-smi >/dev/null || fail_setup "no NVIDIA GPU here: nvidia-smi is not on PATH (run this on the GPU machine)"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
[ -n "$gpu" ] || fail_setup "no NVIDIA GPU here: nvidia-smi lists no device"
capability=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || fail_setup "nvcc is not on PATH nor in /usr/local/cuda/bin"
command -v cmake >/dev/null || fail_setup "cmake is not on PATH"
export PATH="$PATH:/usr/local/cuda/bin"
if wanted nunit || wanted bench || wanted profile; then
  for packed in dotnet-runtime.tar.xz managed.tar.xz; do
    [ -f "$kit/$packed" ] || fail_setup "no $kit/$packed: make the kit first (bench/gpu-check.sh kit, where the .NET SDK is) and bring out/gpu-kit along"
  done
  unpack_managed || fail_setup "unpacking $kit/managed.tar.xz into $managed failed"
fi
slug=$(echo "$gpu" | tr -cs 'A-Za-z0-9' '-' | sed 's/-$//' | tr 'A-Z' 'a-z')
out=${out:-$root/out/gpu-check/$slug-$(date +%Y-%m-%d)}
mkdir -p "$out"
summary="$out/summary.txt"
echo "gpu-check on $gpu (sm_$capability), $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$summary"
failures=0

# step NAME TIMEOUT COMMAND...: runs it with its log in DIR/NAME.log, a line in the summary.
step() {
  local name=$1 limit=$2 start=$SECONDS code
  shift 2
  echo "gpu-check: $name"
  timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
  code=$?
  local verdict=passed
  [ "$code" -eq 0 ] || { verdict="FAILED (exit $code$([ "$code" -eq 124 ] && echo ", over ${limit} s"))"; failures=$((failures + 1)); }
  printf '%-10s %-40s %4d s\n' "$name" "$verdict" $((SECONDS - start)) | tee -a "$summary"
}

build_native() {
  local generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  # The emulated CUDA tier checks kernel logic where no GPU is; here the kernels run for real.
  cmake -S "$root" -B "$root/build/native" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DNE_CUDA=ON \
    -DNE_CUDA_EMULATION=OFF -DCMAKE_CUDA_ARCHITECTURES="${capability:-native}" && cmake --build "$root/build/native" --parallel
}

native_tests() {
  # Every test must run: on a GPU machine a skipped CUDA test is a failure.
  local log
  log=$(ctest --test-dir "$root/build/native" --output-on-failure 2>&1)
  local code=$?
  echo "$log"
  if echo "$log" | grep -q "tests did not run"; then
    echo "gpu-check: some native tests skipped themselves on a GPU machine" >&2
    return 1
  fi
  return $code
}

sanitize() {
  local code=0 tool test
  command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer is not on PATH" >&2; return 1; }
  for tool in memcheck racecheck synccheck initcheck; do
    for test in test_parity test_sae_parity; do
      echo "== compute-sanitizer --tool $tool $test"
      NE_TEST_QUICK=1 compute-sanitizer --tool "$tool" --error-exitcode 9 "$root/build/native/cuda/tests/$test" || code=1
    done
  done
  return $code
}

runtime() {
  local dir=/tmp/gpu-check-dotnet
  [ -x "$dir/dotnet" ] || { mkdir -p "$dir" && tar -C "$dir" -xJf "$kit/dotnet-runtime.tar.xz"; }
  echo "$dir"
}


nunit() {
  local dotnet_root
  dotnet_root=$(runtime)
  DOTNET_ROOT="$dotnet_root" NE_NATIVE_PATH="$root/build/native" \
    "$managed/tests/NativeEngine.Tests" --results-directory "$out" --report-trx --report-trx-filename nunit.trx --no-progress
}

bench_all() {
  local dotnet_root
  dotnet_root=$(runtime)
  DOTNET_ROOT="$dotnet_root" NE_NATIVE_PATH="$root/build/native" \
    "$managed/runner/nativeengine" bench all --backend cuda --seconds "$seconds" --out "$out/bench.json"
}

profile() {
  local nsys dotnet_root
  nsys=$(command -v nsys || ls /opt/nvidia/nsight-*/*/host/target-linux-x64/nsys 2>/dev/null | head -1)
  [ -n "$nsys" ] || { echo "Nsight Systems (nsys) is not on PATH nor under /opt/nvidia" >&2; return 1; }
  dotnet_root=$(runtime)
  export DOTNET_ROOT="$dotnet_root" NE_NATIVE_PATH="$root/build/native"
  "$nsys" profile -t cuda,nvtx --nvtx-domain-include=nativeengine -o "$out/profile_toy" --force-overwrite true \
    "$managed/runner/nativeengine" toy --config "$root/configs/paper/n100_m20.json" --steps 2000 --backend cuda \
    --out /tmp/gpu-check-toy || return 1
  "$nsys" profile -t cuda,nvtx --nvtx-domain-include=nativeengine -o "$out/profile_factorize" --force-overwrite true \
    "$managed/runner/nativeengine" factorize --config "$root/configs/factorize/synthetic_d256.json" --backend cuda \
    --out /tmp/gpu-check-factorize || return 1
  "$nsys" stats --report nvtx_sum,cuda_gpu_kern_sum "$out/profile_toy.nsys-rep" "$out/profile_factorize.nsys-rep"
}

# Time limits per step: the whole run stays within 8 minutes on an H100.
wanted build && step build 150 build_native
wanted native && step native 90 native_tests
wanted sanitize && step sanitize 120 sanitize
wanted nunit && step nunit 90 nunit
wanted bench && step bench 120 bench_all
wanted profile && step profile 60 profile

echo "gpu-check: $failures step(s) failed; logs in $out" | tee -a "$summary"
[ "$failures" -eq 0 ]
