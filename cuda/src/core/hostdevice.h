// Marks functions that compile for both the CPU backend and CUDA kernels, so the two share one definition.
#pragma once
#if defined(__CUDACC__)
#  define NE_HD __host__ __device__ __forceinline__
#else
#  define NE_HD inline
#endif
