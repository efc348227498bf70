// libFuzzer target: the daemon's HTTP request path (HttpSession), end to end over real
// loopback sockets, in the current network namespace (no root needed). The harness,
// shared with fuzz_tls_request.cc, and the properties it checks: session_harness.h.
// Here, whatever the daemon sent must start with "HTTP/1.".
#include <cstddef>
#include <cstdint>
#include <string>

#include "session_harness.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz_session::setup("fuzz_http_request");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_session::run_input(data, size, [](const std::string& head) {
    return head.compare(0, 7, "HTTP/1.") == 0
               ? std::string()
               : std::string("the daemon sent something that is not an HTTP response");
  });
  return 0;
}
