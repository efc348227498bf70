// A main() for the libFuzzer targets in the normal (gcc) builds: runs the target once on
// each file named on the command line, or on every file of each directory named there,
// the way libFuzzer runs a corpus without fuzzing. `make test` uses it (ctest
// fuzz.replay.<target>) so that every target compiles in every build and its seed corpus
// passes under the release and the ASan builds; `make fuzz` builds the same sources with
// libFuzzer (test/fuzz/CMakeLists.txt) and fuzzes them.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

// The files to run: each argument that is a file, and each regular file of each argument
// that is a directory (sorted, for a repeatable order).
bool collect(const std::string& path, std::vector<std::string>* files) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    std::fprintf(stderr, "replay: %s: no such file or directory\n", path.c_str());
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    files->push_back(path);
    return true;
  }
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    std::fprintf(stderr, "replay: %s: cannot open the directory\n", path.c_str());
    return false;
  }
  std::vector<std::string> found;
  while (dirent* e = ::readdir(d)) {
    std::string f = path + "/" + e->d_name;
    struct stat fst {};
    if (::stat(f.c_str(), &fst) == 0 && S_ISREG(fst.st_mode)) found.push_back(f);
  }
  ::closedir(d);
  std::sort(found.begin(), found.end());
  files->insert(files->end(), found.begin(), found.end());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
    return 2;
  }
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    if (!collect(argv[i], &files)) return 2;
  }
  if (files.empty()) {
    std::fprintf(stderr, "replay: no input files\n");
    return 2;
  }
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::fprintf(stderr, "replay: %s: cannot read\n", f.c_str());
      return 2;
    }
    // A violated property aborts inside the target, naming the input.
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  std::printf("replay: %zu inputs, no failure\n", files.size());
  return 0;
}
