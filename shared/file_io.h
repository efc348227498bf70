// Small file helpers the daemon's journal and nsproxyctl's CNI installer share.
#pragma once

#include <sys/stat.h>

#include <string>

#include "error.h"

namespace nsproxy {

// Writes all of data to fd, retrying after EINTR and short writes. Errors carry `code`
// and name `path`.
Status write_all(int fd, const std::string& data, const std::string& path, Code code = Code::kIo);

// fsync of a directory: makes a rename or unlink inside it durable.
Status fsync_dir(const std::string& dir, Code code = Code::kIo);

// The whole regular file at path (at most max_bytes), and its stat in *st when given.
// kNotFound when there is no such file; a FIFO or device is an error, never read (a FIFO
// would block).
Result<std::string> read_file(const std::string& path, struct stat* st = nullptr,
                              size_t max_bytes = size_t{16} << 20);

}  // namespace nsproxy
