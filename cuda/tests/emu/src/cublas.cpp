// Emulated cuBLAS: handles bound to streams, and cublasGemmEx in column-major layout with fp32 accumulation in one
// fixed order (l = 0 .. k-1), so results repeat bit for bit. Inputs: fp32; fp32 rounded to tf32 (10-bit mantissa,
// to nearest with ties away from zero, as cvt.rna.tf32.f32) under CUBLAS_COMPUTE_32F_FAST_TF32; or bf16. Every
// matrix must lie in device memory, with the extent its leading dimension implies.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <string.h>

#include <vector>

#include "internal.h"
#include "ne_emu/host.h"

struct cublasContext {
    cudaStream_t stream;
};

namespace {

float round_to_tf32(float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    if ((bits & 0x7f800000u) != 0x7f800000u) {  // finite: round the 13 dropped bits, ties away from zero
        bits += 0x1000u;
        bits &= 0xffffe000u;
    }
    memcpy(&v, &bits, sizeof v);
    return v;
}

size_t element_size(cudaDataType type) { return type == CUDA_R_16BF || type == CUDA_R_16F ? 2 : type == CUDA_R_64F ? 8 : 4; }

// Element (row, col) of a stored column-major matrix, as float.
float load(const void* base, cudaDataType type, int64_t ld, int64_t row, int64_t col) {
    const int64_t at = row + col * ld;
    if (type == CUDA_R_16BF) return static_cast<float>(static_cast<const __nv_bfloat16*>(base)[at]);
    return static_cast<const float*>(base)[at];
}

bool valid(cublasHandle_t handle) { return handle != nullptr && ne_emu::live_blas(handle); }

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
    if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        cudaGetLastError();
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    *handle = new cublasContext{nullptr};
    ne_emu::register_blas(*handle, true);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    if (!valid(handle)) {
        ne_emu::report("cublasDestroy(%p): not a live handle", static_cast<void*>(handle));
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    ne_emu::register_blas(handle, false);
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!ne_emu::check_stream("cublasSetStream", stream)) return CUBLAS_STATUS_INVALID_VALUE;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream) {
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (stream == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *stream = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status) {
    switch (status) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasGetStatusString(cublasStatus_t status) {
    switch (status) {
        case CUBLAS_STATUS_SUCCESS: return "success";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
        case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
        case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
        case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    }
    return "unknown error";
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    const char* call = "cublasGemmEx";
    (void)algo;
    if (!valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    ne_emu::DeviceLock lock;
    if (!ne_emu::check_stream(call, handle->stream)) return CUBLAS_STATUS_INVALID_VALUE;
    const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    // Stored shapes: A is m x k (or k x m transposed), B is k x n (or n x k).
    const int a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) ||
        ldc < (m > 1 ? m : 1) || alpha == nullptr || beta == nullptr) {
        ne_emu::report("%s: invalid shape m=%d n=%d k=%d lda=%d ldb=%d ldc=%d", call, m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    const bool tf32 = computeType == CUBLAS_COMPUTE_32F_FAST_TF32;
    const bool inputs_ok = Atype == Btype && (Atype == CUDA_R_32F || (Atype == CUDA_R_16BF && !tf32));
    if ((computeType != CUBLAS_COMPUTE_32F && !tf32) || !inputs_ok || Ctype != CUDA_R_32F) {
        ne_emu::report("%s: compute type %d with A %d, B %d, C %d is not emulated (fp32 output, fp32/tf32/bf16 inputs)",
                       call, static_cast<int>(computeType), static_cast<int>(Atype), static_cast<int>(Btype),
                       static_cast<int>(Ctype));
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    auto extent = [](int rows, int cols, int ld, cudaDataType type) {
        return (static_cast<size_t>(cols - 1) * ld + rows) * element_size(type);
    };
    if ((k > 0 && (!ne_emu::check_device_range(call, "A", A, extent(a_rows, a_cols, lda, Atype)) ||
                   !ne_emu::check_device_range(call, "B", B, extent(b_rows, b_cols, ldb, Btype)))) ||
        !ne_emu::check_device_range(call, "C", C, extent(m, n, ldc, Ctype)))
        return CUBLAS_STATUS_INVALID_VALUE;
    const float a_scale = *static_cast<const float*>(alpha), b_scale = *static_cast<const float*>(beta);
    ne_emu::DeviceAccess access(call);
    float* c = static_cast<float*>(C);
    std::vector<float> row(static_cast<size_t>(k));  // op(A)'s row i
    for (int i = 0; i < m; ++i) {
        for (int l = 0; l < k; ++l) {
            const float v = ta ? load(A, Atype, lda, l, i) : load(A, Atype, lda, i, l);
            row[l] = tf32 ? round_to_tf32(v) : v;
        }
        for (int j = 0; j < n; ++j) {
            float sum = 0.0f;
            for (int l = 0; l < k; ++l) {
                const float v = tb ? load(B, Btype, ldb, j, l) : load(B, Btype, ldb, l, j);
                sum += row[l] * (tf32 ? round_to_tf32(v) : v);
            }
            float& out = c[i + static_cast<int64_t>(j) * ldc];
            // beta = 0 does not read C (it may hold anything, NaN included), as in BLAS.
            out = b_scale == 0.0f ? a_scale * sum : a_scale * sum + b_scale * out;
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}
