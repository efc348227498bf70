#include "scratch.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace nspit {
namespace {

std::atomic<int> g_counter{0};

}  // namespace

std::string unique_name() {
  return "nspit-" + std::to_string(::getpid()) + "-" + std::to_string(++g_counter);
}

std::string short_token() {
  static const char* digits = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string pid;
  for (int p = ::getpid() % 1000000; p > 0; p /= 36) pid.insert(pid.begin(), digits[p % 36]);
  return pid + "x" + std::to_string(++g_counter);
}

TempDir::TempDir(const std::string& parent) {
  std::string tmpl = parent + "/nspit-" + std::to_string(::getpid()) + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << tmpl << ": " << std::strerror(errno);
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::write(std::string_view name, std::string_view content) const {
  std::string p = file(name);
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << content;
  if (!f) ADD_FAILURE() << "cannot write " << p;
  return p;
}

}  // namespace nspit
