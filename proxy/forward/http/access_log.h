// The access log's line format (--access-log): one JSON object per response.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace nsproxy {

// One access log line: a JSON object without the newline, written exactly as
// nlohmann::json::dump(-1, ' ', false, error_handler_t::replace) wrote it before
// (sorted keys; invalid UTF-8 replaced by U+FFFD), but with no heap allocation once
// `out` has capacity. The pieces are exposed for tests.
struct AccessLogRecord {
  std::string_view tenant, listen, method, path;
  int status = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
  double duration_ms = 0;
};
void append_access_log_line(std::string* out, const AccessLogRecord& r);
void append_json_string(std::string* out, std::string_view s);  // quoted and escaped
void append_json_number(std::string* out, double v);            // "1.5", "2.0", "0.0"

// Writes r as one line (with its newline) to out, in one fwrite.
void write_access_log(FILE* out, const AccessLogRecord& r);

}  // namespace nsproxy
