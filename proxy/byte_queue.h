// A growable FIFO of bytes for a connection's output. Writers bound it themselves:
// sessions stop reading input while the queue towards the other side is above its
// high-water mark, so it never holds more than about one mark plus one read. Its memory
// is released whenever it drains, so an idle connection holds none.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cerrno>
#include <string>
#include <string_view>

namespace nsproxy {

class ByteQueue {
 public:
  size_t size() const { return data_.size() - off_; }
  bool empty() const { return size() == 0; }
  void append(std::string_view s) { data_.append(s); }
  void append(const char* p, size_t n) { data_.append(p, n); }
  std::string_view view() const { return std::string_view(data_).substr(off_); }

  void consume(size_t n) {
    off_ += n;
    if (off_ == data_.size()) {
      clear();
    } else if (off_ > 64 * 1024 && off_ > data_.size() / 2) {
      data_.erase(0, off_);
      off_ = 0;
    }
  }

  void clear() {
    std::string().swap(data_);
    off_ = 0;
  }

  // Sends once; returns bytes written or -1 with errno (EAGAIN when the socket is full).
  ssize_t write_to(int fd) {
    if (empty()) return 0;
    ssize_t n;
    do {
      n = ::send(fd, data_.data() + off_, size(), MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n > 0) consume(static_cast<size_t>(n));
    return n;
  }

 private:
  std::string data_;
  size_t off_ = 0;
};

}  // namespace nsproxy
