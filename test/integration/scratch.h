// Unique names and temporary directories for what a test creates. ctest runs tests in
// parallel: nothing may have a fixed name.
#pragma once

#include <string>
#include <string_view>

namespace nspit {

// "nspit-<pid>-<n>", unique within this run and across parallel test processes.
std::string unique_name();
// A short unique token ("<pid in base 36>x<n>"), for names with length limits (ifnames).
std::string short_token();

// mkdtemp under `parent` (/tmp unless said otherwise, e.g. /var/tmp for a directory on
// disk); removed recursively in the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& parent = "/tmp");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }
  // Writes a file under the directory; returns its path.
  std::string write(std::string_view name, std::string_view content) const;

 private:
  std::string path_;
};

}  // namespace nspit
