#include "log.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>

namespace nsproxy {
namespace {
LogLevel g_level = LogLevel::Info;
LogFormat g_format = LogFormat::Text;
const char* g_prefix = "nsproxy";
const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::Debug:
      return "debug";
    case LogLevel::Info:
      return "info";
    case LogLevel::Warn:
      return "warn";
    case LogLevel::Error:
      return "error";
  }
  return "?";
}

// "2026-12-01T21:13:35.123Z"
void format_time(char (&out)[64]) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000000);
}

// One write per line so concurrent writers do not interleave within a line.
void emit(const char* data, size_t len) {
  std::fwrite(data, 1, len, stderr);
  std::fflush(stderr);
}

void write_line(LogLevel level, std::initializer_list<LogField> fields, const char* fmt,
                va_list ap) {
  char when[64];
  format_time(when);
  char msg[2048];
  int m = std::vsnprintf(msg, sizeof msg, fmt, ap);
  if (m < 0) msg[0] = '\0';
  if (g_format == LogFormat::Json) {
    nlohmann::ordered_json j = {
        {"ts", when}, {"level", level_name(level)}, {"program", g_prefix}, {"msg", msg}};
    for (const LogField& f : fields) j[f.key] = std::string(f.value);
    std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    line.push_back('\n');
    emit(line.data(), line.size());
    return;
  }
  char line[2200];
  int n = std::snprintf(line, sizeof line, "%s %s %s: %s", when, g_prefix, level_name(level), msg);
  if (n < 0) return;
  size_t len = static_cast<size_t>(n);
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  emit(line, len);
}
}  // namespace

void set_log_level(LogLevel level) {
  g_level = level;
}
LogLevel log_level() {
  return g_level;
}
void set_log_prefix(const char* prefix) {
  g_prefix = prefix;
}
void set_log_format(LogFormat format) {
  g_format = format;
}

bool parse_log_level(std::string_view text, LogLevel* out) {
  for (LogLevel l : {LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error}) {
    if (text == level_name(l)) {
      *out = l;
      return true;
    }
  }
  return false;
}

bool parse_log_format(std::string_view text, LogFormat* out) {
  if (text == "text") {
    *out = LogFormat::Text;
  } else if (text == "json") {
    *out = LogFormat::Json;
  } else {
    return false;
  }
  return true;
}

void log_write(LogLevel level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  write_line(level, {}, fmt, ap);
  va_end(ap);
}

void log_write_fields(LogLevel level, std::initializer_list<LogField> fields, const char* fmt,
                      ...) {
  va_list ap;
  va_start(ap, fmt);
  write_line(level, fields, fmt, ap);
  va_end(ap);
}

}  // namespace nsproxy
