// Minimal leveled logging to stderr (never stdout: the CNI plugin's stdout is its result).
#pragma once

#include <initializer_list>
#include <string_view>

namespace nsproxy {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };
// Text: "<time> <program> <level>: <message>". Json: one object per line,
// {"ts","level","program","msg"} plus the fields of a structured call (log_fields).
enum class LogFormat { Text, Json };

void set_log_level(LogLevel level);
LogLevel log_level();
// Parses "debug", "info", "warn", "error"; returns false on anything else.
bool parse_log_level(std::string_view text, LogLevel* out);
void set_log_prefix(const char* prefix);  // program name shown on every line
void set_log_format(LogFormat format);
// Parses "text", "json"; returns false on anything else.
bool parse_log_format(std::string_view text, LogFormat* out);

void log_write(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// A structured field of a log line: {"tenant", id}. In json format each becomes a key of
// the line's object; text lines carry the same facts in their message.
struct LogField {
  const char* key;
  std::string_view value;
};
void log_write_fields(LogLevel level, std::initializer_list<LogField> fields, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

}  // namespace nsproxy

#define NSP_LOG(level, ...)                                                  \
  do {                                                                       \
    if (static_cast<int>(level) >= static_cast<int>(::nsproxy::log_level())) \
      ::nsproxy::log_write(level, __VA_ARGS__);                              \
  } while (0)
#define LOG_DEBUG(...) NSP_LOG(::nsproxy::LogLevel::Debug, __VA_ARGS__)
#define LOG_INFO(...) NSP_LOG(::nsproxy::LogLevel::Info, __VA_ARGS__)
#define LOG_WARN(...) NSP_LOG(::nsproxy::LogLevel::Warn, __VA_ARGS__)
#define LOG_ERROR(...) NSP_LOG(::nsproxy::LogLevel::Error, __VA_ARGS__)

// With fields: LOG_INFO_F(({{"tenant", id}, {"listen", addr}}), "tenant %s: ...", ...).
#define NSP_LOG_F(level, fields, ...)                                                       \
  do {                                                                                      \
    if (static_cast<int>(level) >= static_cast<int>(::nsproxy::log_level()))                \
      ::nsproxy::log_write_fields(level, std::initializer_list<::nsproxy::LogField> fields, \
                                  __VA_ARGS__);                                             \
  } while (0)
#define LOG_DEBUG_F(fields, ...) NSP_LOG_F(::nsproxy::LogLevel::Debug, fields, __VA_ARGS__)
#define LOG_INFO_F(fields, ...) NSP_LOG_F(::nsproxy::LogLevel::Info, fields, __VA_ARGS__)
#define LOG_WARN_F(fields, ...) NSP_LOG_F(::nsproxy::LogLevel::Warn, fields, __VA_ARGS__)
#define LOG_ERROR_F(fields, ...) NSP_LOG_F(::nsproxy::LogLevel::Error, fields, __VA_ARGS__)
