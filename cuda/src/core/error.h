// Errors inside the library are C++ exceptions of type ne::Error; the api/ layer turns every exception into a
// status plus a thread-local message, so nothing ever unwinds across the C ABI.
#pragma once
#include <stdexcept>
#include <string>

#include "nativeengine.h"

namespace ne {

class Error : public std::runtime_error {
public:
    Error(ne_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    ne_status status() const { return status_; }

private:
    ne_status status_;
};

[[noreturn]] inline void fail(ne_status status, const std::string& message) { throw Error(status, message); }
[[noreturn]] inline void invalid(const std::string& message) { fail(NE_ERR_INVALID_ARGUMENT, message); }

void set_last_error(const std::string& message);
void clear_last_error();
const char* last_error_cstr();  // the calling thread's last message, "" when none

// Runs body; returns NE_OK or the status of whatever it threw, recording the message. Never throws.
template <class Body>
ne_status guarded(const char* function, Body&& body) noexcept {
    try {
        clear_last_error();
        body();
        return NE_OK;
    } catch (const Error& e) {
        set_last_error(std::string(function) + ": " + e.what());
        return e.status();
    } catch (const std::bad_alloc&) {
        set_last_error(std::string(function) + ": out of host memory");
        return NE_ERR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        set_last_error(std::string(function) + ": internal error: " + e.what());
        return NE_ERR_INTERNAL;
    } catch (...) {
        set_last_error(std::string(function) + ": internal error: unknown exception");
        return NE_ERR_INTERNAL;
    }
}

}  // namespace ne
