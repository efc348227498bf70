#include "control/state_journal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "file_io.h"
#include "log.h"

namespace nsproxy {
namespace {

using nlohmann::json;

json key_json(const AttachmentKey& k) {
  return {{"network", k.network}, {"id", k.id}, {"ifname", k.ifname}};
}

std::string add_line(const Request& req, NetnsId id, const std::vector<std::string>& added) {
  json j = {{"op", "add"},
            {"request", json::parse(encode_request(req))},
            {"dev", static_cast<uint64_t>(id.dev)},
            {"ino", static_cast<uint64_t>(id.ino)}};
  if (!added.empty()) j["added_addresses"] = added;
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace

std::vector<std::string> added_addresses_from(const nlohmann::json& j) {
  std::vector<std::string> out;
  auto it = j.find("added_addresses");
  if (it == j.end() || !it->is_array()) return out;
  for (const auto& a : *it) {
    if (a.is_string() && a.get_ref<const std::string&>().size() < 64 && out.size() < 64) {
      out.push_back(a.get<std::string>());
    }
  }
  return out;
}

Result<StateJournal> StateJournal::open(const std::string& dir,
                                        std::vector<SavedRegistration>* saved, bool sync) {
  std::string path = dir + "/registrations.journal";
  // One daemon per state directory: a lock held for the daemon's lifetime.
  UniqueFd lock(::open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) return errno_error(Code::kState, "open " + dir + "/lock");
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) < 0) {
    return make_error(Code::kState, "another nsproxyd uses the state directory " + dir);
  }
  std::map<AttachmentKey, SavedRegistration> live;
  size_t lines = 0;
  {
    std::ifstream in(path);
    std::string line;
    size_t number = 0;
    while (std::getline(in, line)) {
      ++number;
      ++lines;
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("op")) {
        LOG_WARN("%s:%zu: unreadable line ignored (torn write?)", path.c_str(), number);
        continue;
      }
      std::string op = j.value("op", "");
      if (op == "add" && j.contains("request")) {
        auto req = decode_request(j["request"].dump());
        if (!req) {
          LOG_WARN("%s:%zu: %s; ignored", path.c_str(), number, req.error().message.c_str());
          continue;
        }
        SavedRegistration s{std::move(*req), {}, {}};
        s.netns_id.dev = static_cast<dev_t>(j.value("dev", uint64_t{0}));
        s.netns_id.ino = static_cast<ino_t>(j.value("ino", uint64_t{0}));
        s.added_addresses = added_addresses_from(j);
        AttachmentKey key = s.request.attachment;
        live[key] = std::move(s);
      } else if (op == "del" && j.contains("attachment") && j["attachment"].is_object()) {
        const json& a = j["attachment"];
        live.erase(AttachmentKey{a.value("network", ""), a.value("id", ""), a.value("ifname", "")});
      } else {
        LOG_WARN("%s:%zu: unknown entry ignored", path.c_str(), number);
      }
    }
  }
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!fd) return errno_error(Code::kState, "open " + path);
  for (auto& [key, s] : live) saved->push_back(std::move(s));
  StateJournal journal(dir, path, std::move(fd), lines);
  journal.lock_ = std::move(lock);
  journal.sync_ = sync;
  return journal;
}

Status StateJournal::append(const std::string& line) {
  if (Status s = write_all(fd_.get(), line, path_, Code::kState); !s) return s;
  if (sync_ && ::fdatasync(fd_.get()) < 0) return errno_error(Code::kState, "fdatasync " + path_);
  ++lines_;
  return {};
}

Status StateJournal::record_add(const Request& req, NetnsId id,
                                const std::vector<std::string>& added_addresses) {
  return append(add_line(req, id, added_addresses));
}

Status StateJournal::record_del(const AttachmentKey& key) {
  json j = {{"op", "del"}, {"attachment", key_json(key)}};
  return append(j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
}

Status StateJournal::compact(const std::vector<SavedRegistration>& live) {
  std::string tmp = path_ + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return errno_error(Code::kState, "open " + tmp);
  std::string data;
  for (const auto& s : live) data += add_line(s.request, s.netns_id, s.added_addresses);
  if (Status s = write_all(fd.get(), data, tmp, Code::kState); !s) return s;
  if (sync_ && ::fsync(fd.get()) < 0) return errno_error(Code::kState, "fsync " + tmp);
  if (::rename(tmp.c_str(), path_.c_str()) < 0) return errno_error(Code::kState, "rename " + tmp);
  if (sync_) {
    if (Status s = fsync_dir(dir_, Code::kState); !s) return s;
  }
  UniqueFd appender(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
  if (!appender) return errno_error(Code::kState, "open " + path_);
  fd_ = std::move(appender);
  lines_ = live.size();
  return {};
}

}  // namespace nsproxy
