// libFuzzer target: the daemon's control-message decoder on arbitrary bytes.
//
// Properties checked (abort on violation):
//   - decode_request never crashes, leaks or trips ASan/UBSan, whatever the bytes;
//   - a failed decode carries a known error code and a non-empty message;
//   - a request that decodes survives encode_request -> decode_request with everything
//     the daemon acts on unchanged (the plugin and nsproxyctl encode what the daemon
//     decodes).
//
// Every field is compared. (The two gaps this target first found, an attachment with
// only an ifname and valid_attachments outside gc, are fixed in control_protocol.cc.)
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
               what, static_cast<int>(input.size()), input.data(), encoded.c_str(), detail.c_str());
  std::abort();
}

// First field that differs, or empty.
std::string difference(const Request& a, const Request& b) {
  if (a.op != b.op) return "op";
  if (a.attachment != b.attachment) return "attachment";
  if (a.netns_path != b.netns_path) return "netns";
  if (a.listeners != b.listeners) return "listeners";
  if (a.labels != b.labels) return "labels";
  if (a.headers != b.headers) return "headers";
  if (a.limits != b.limits) return "limits";
  if (a.valid_attachments != b.valid_attachments) return "valid_attachments";
  return {};
}

bool known_code(nsproxy::Code code) {
  return code == nsproxy::Code::kBadRequest || code == nsproxy::Code::kUnsupportedVersion ||
         code == nsproxy::Code::kTooLarge;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto first = nsproxy::decode_request(input);
  if (!first) {
    if (!known_code(first.error().code) || first.error().message.empty()) {
      fail("decode error without a known code or a message", input, "",
           std::string(nsproxy::code_name(first.error().code)) + ": " + first.error().message);
    }
    return 0;
  }
  std::string encoded = nsproxy::encode_request(*first);
  auto second = nsproxy::decode_request(encoded);
  if (!second) {
    fail("encoded request does not decode", input, encoded,
         std::string(nsproxy::code_name(second.error().code)) + ": " + second.error().message);
  }
  if (std::string field = difference(*first, *second); !field.empty()) {
    fail("round trip changed the request", input, encoded, "field " + field);
  }
  return 0;
}
