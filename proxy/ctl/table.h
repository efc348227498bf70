// A text table with columns sized to their widest cell, for nsproxyctl's output.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace nsproxy {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }

  void print(FILE* out) const {
    std::vector<size_t> width(header_.size(), 0);
    auto measure = [&](const std::vector<std::string>& r) {
      for (size_t i = 0; i < r.size() && i < width.size(); ++i) {
        if (r[i].size() > width[i]) width[i] = r[i].size();
      }
    };
    measure(header_);
    for (const auto& r : rows_) measure(r);
    auto line = [&](const std::vector<std::string>& r) {
      std::string s;
      for (size_t i = 0; i < r.size() && i < width.size(); ++i) {
        s += r[i];
        if (i + 1 < r.size()) s += std::string(width[i] - r[i].size() + 2, ' ');
      }
      s.erase(s.find_last_not_of(' ') + 1);  // empty last cells leave no trailing blanks
      std::fprintf(out, "%s\n", s.c_str());
    };
    line(header_);
    for (const auto& r : rows_) line(r);
  }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace nsproxy
