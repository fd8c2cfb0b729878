// RAII NVTX range in the "nativeengine" domain, so Nsight Systems shows each step phase. Compiled out when the
// NVTX3 headers (header-only, shipped with the CUDA toolkit) are absent.
#pragma once

#if defined(__has_include)
#  if __has_include(<nvtx3/nvToolsExt.h>) && !defined(NE_NO_NVTX)
#    include <nvtx3/nvToolsExt.h>
#    define NE_HAVE_NVTX 1
#  endif
#endif

namespace ne {

#ifdef NE_HAVE_NVTX
struct NvtxDomain {
    static nvtxDomainHandle_t get() {
        static nvtxDomainHandle_t domain = nvtxDomainCreateA("nativeengine");
        return domain;
    }
};

class NvtxRange {
public:
    explicit NvtxRange(const char* name) {
        nvtxEventAttributes_t attributes = {};
        attributes.version = NVTX_VERSION;
        attributes.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
        attributes.messageType = NVTX_MESSAGE_TYPE_ASCII;
        attributes.message.ascii = name;
        nvtxDomainRangePushEx(NvtxDomain::get(), &attributes);
    }
    ~NvtxRange() { nvtxDomainRangePop(NvtxDomain::get()); }
    NvtxRange(const NvtxRange&) = delete;
    NvtxRange& operator=(const NvtxRange&) = delete;
};
#else
class NvtxRange {
public:
    explicit NvtxRange(const char*) {}
};
#endif

}  // namespace ne

#define NE_NVTX_CONCAT2(a, b) a##b
#define NE_NVTX_CONCAT(a, b) NE_NVTX_CONCAT2(a, b)
#define NE_NVTX_RANGE(name) ::ne::NvtxRange NE_NVTX_CONCAT(ne_nvtx_range_, __LINE__)(name)
