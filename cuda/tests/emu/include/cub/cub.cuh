// Emulated CUB: the collectives and device-wide algorithms the engine uses (see cuda_runtime.h).
#pragma once
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
