// libFuzzer target: the daemon's control-message decoder on arbitrary bytes.
//
// Properties checked (abort on violation):
//   - decode_request never crashes, leaks or trips ASan/UBSan, whatever the bytes;
//   - a failed decode carries a known error code and a non-empty message;
//   - a request that decodes survives encode_request -> decode_request with everything
//     the daemon acts on unchanged (the plugin and nsproxyctl encode what the daemon
//     decodes).
//
// "Everything the daemon acts on": decode_request accepts, and keeps, two things that
// the daemon ignores and encode_request does not write: an "attachment" for list/status
// (with neither id nor network, e.g. {"ifname":"x"}), and "valid_attachments" for an op
// other than gc. Those two differences are not compared by default, so that the fuzzer
// keeps looking for real divergences; NSPROXY_FUZZ_STRICT=1 in the environment compares
// every field and finds them within seconds.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "control_protocol.h"

namespace {

using nsproxy::Request;

[[noreturn]] void fail(const char* what, std::string_view input, const std::string& encoded,
                       const std::string& detail) {
  std::fprintf(stderr, "fuzz_control_request: %s\n  input:   %.*s\n  encoded: %s\n  detail:  %s\n",
               what, static_cast<int>(input.size()), input.data(), encoded.c_str(),
               detail.c_str());
  std::abort();
}

bool strict = false;

// First field that differs, or empty.
std::string difference(const Request& a, const Request& b) {
  using nsproxy::Op;
  if (a.op != b.op) return "op";
  bool keyed = a.op == Op::Add || a.op == Op::Del || a.op == Op::Check || a.op == Op::Gc;
  if ((strict || keyed) && a.attachment != b.attachment) return "attachment";
  if (a.netns_path != b.netns_path) return "netns";
  if (a.listeners != b.listeners) return "listeners";
  if (a.labels != b.labels) return "labels";
  if (a.headers != b.headers) return "headers";
  if ((strict || a.op == Op::Gc) && a.valid_attachments != b.valid_attachments) {
    return "valid_attachments";
  }
  return {};
}

bool known_code(const std::string& code) {
  return code == nsproxy::codes::kBadRequest || code == nsproxy::codes::kUnsupportedVersion ||
         code == nsproxy::codes::kTooLarge;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* s = std::getenv("NSPROXY_FUZZ_STRICT");
  strict = s != nullptr && std::string_view(s) == "1";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto first = nsproxy::decode_request(input);
  if (!first) {
    if (!known_code(first.error().code) || first.error().message.empty()) {
      fail("decode error without a known code or a message", input, "",
           first.error().code + ": " + first.error().message);
    }
    return 0;
  }
  std::string encoded = nsproxy::encode_request(*first);
  auto second = nsproxy::decode_request(encoded);
  if (!second) {
    fail("encoded request does not decode", input, encoded,
         second.error().code + ": " + second.error().message);
  }
  if (std::string field = difference(*first, *second); !field.empty()) {
    fail("round trip changed the request", input, encoded, "field " + field);
  }
  return 0;
}
