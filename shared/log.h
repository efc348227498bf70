// Minimal leveled logging to stderr (never stdout: the CNI plugin's stdout is its result).
#pragma once

#include <string_view>

namespace nsproxy {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Parses "debug", "info", "warn", "error"; returns false on anything else.
bool parse_log_level(std::string_view text, LogLevel* out);
void set_log_prefix(const char* prefix);  // program name shown on every line

void log_write(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

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
