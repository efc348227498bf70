#include "forward/http/access_log.h"

#include <charconv>
#include <cmath>

namespace nsproxy {

void append_json_string(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD, for invalid UTF-8
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      // JSON's short escapes as (character, letter) pairs: '\n' becomes "\\n". Other
      // control characters become \u00XX.
      static constexpr std::string_view kShort = "\bb\tt\nn\ff\rr\"\"\\\\";
      size_t e = kShort.find(static_cast<char>(b));
      if (e != std::string_view::npos && e % 2 == 0) {
        out->push_back('\\');
        out->push_back(kShort[e + 1]);
      } else if (b < 0x20) {
        out->append("\\u00");
        out->push_back(kHex[b >> 4]);
        out->push_back(kHex[b & 0xF]);
      } else {
        out->push_back(static_cast<char>(b));
      }
      ++i;
      continue;
    }
    // A multi-byte sequence: its length and the range its second byte must fall in
    // (no overlong forms, no surrogates, nothing above U+10FFFF).
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    }
    if (len == 0) {  // not a lead byte: replaced, and consumed
      out->append(kReplacement);
      ++i;
      continue;
    }
    size_t k = 1;
    for (; k < len && i + k < s.size(); ++k) {
      auto c = static_cast<unsigned char>(s[i + k]);
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) break;
    }
    if (k == len) {
      out->append(s.substr(i, len));
      i += len;
    } else {
      // Broken or cut short: one replacement; the byte that broke it starts afresh.
      out->append(kReplacement);
      i += k;
    }
  }
  out->push_back('"');
}

void append_json_number(std::string* out, double v) {
  if (v == 0) {
    out->append(std::signbit(v) ? "-0.0" : "0.0");
    return;
  }
  char buf[400];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  std::string_view digits(buf, static_cast<size_t>(r.ptr - buf));
  out->append(digits);
  if (digits.find('.') == std::string_view::npos) out->append(".0");
}

namespace {

void append_json_uint(std::string* out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, static_cast<size_t>(r.ptr - buf));
}

}  // namespace

void append_access_log_line(std::string* out, const AccessLogRecord& r) {
  // Keys in the order nlohmann::json (a sorted map) wrote them.
  out->append("{\"bytes_in\":");
  append_json_uint(out, r.bytes_in);
  out->append(",\"bytes_out\":");
  append_json_uint(out, r.bytes_out);
  out->append(",\"duration_ms\":");
  append_json_number(out, r.duration_ms);
  out->append(",\"listen\":");
  append_json_string(out, r.listen);
  out->append(",\"method\":");
  append_json_string(out, r.method);
  out->append(",\"path\":");
  append_json_string(out, r.path);
  out->append(",\"status\":");
  if (r.status < 0) out->push_back('-');
  append_json_uint(
      out, static_cast<uint64_t>(r.status < 0 ? -static_cast<int64_t>(r.status) : r.status));
  out->append(",\"tenant\":");
  append_json_string(out, r.tenant);
  out->push_back('}');
}

void write_access_log(FILE* out, const AccessLogRecord& r) {
  // One line buffer per thread: its capacity is reused, bounded after a huge line.
  thread_local std::string line;
  line.clear();
  append_access_log_line(&line, r);
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), out);
  if (line.capacity() > 16 * 1024) std::string().swap(line);
}

}  // namespace nsproxy
