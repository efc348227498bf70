// Persistence of registrations: an append-only journal in the state directory.
//
// Each acknowledged change is one line, written before the reply (and fdatasync'ed too
// when the journal was opened with sync: for a state directory on disk):
//   {"op":"add","request":{<the add request, as on the control socket>},"dev":N,"ino":N,
//    "added_addresses":["169.254.169.254"]}      (only when nsproxy added IPs to lo)
//   {"op":"del","attachment":{"network":..,"id":..,"ifname":..}}
// A change costs one small append, whatever the number of tenants. When the journal has
// grown well past the live set, it is compacted: the live registrations are written to
// a temporary file, renamed over the journal (with sync: the file fsync'ed before, the
// directory after). A torn last line (crash in the middle of a write) is ignored on load.
//
// Durability: a write() that returned is in the page cache and survives kill -9 of the
// daemon; only a crash of the kernel loses it. The default directory, /run/nsproxy, is a
// tmpfs that a reboot empties anyway, as it empties every namespace the journal names, so
// fdatasync buys nothing there (and costs about 0.4 ms per ADD on a disk).
#pragma once

#include <sys/types.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "control_protocol.h"
#include "error.h"
#include "netns.h"
#include "unique_fd.h"

namespace nsproxy {

struct SavedRegistration {
  Request request;  // op add: attachment, netns path, listeners, labels, headers
  NetnsId netns_id;
  // IPs nsproxy added to the namespace's lo for this registration (removed on DEL).
  std::vector<std::string> added_addresses;
};

// The "added_addresses" array of a journal line or handover message (bounded).
std::vector<std::string> added_addresses_from(const nlohmann::json& j);

class StateJournal {
 public:
  // Opens (creating) DIR/registrations.journal. Returns the registrations it holds.
  // sync: fdatasync every change (and fsync on compaction).
  static Result<StateJournal> open(const std::string& dir, std::vector<SavedRegistration>* saved,
                                   bool sync = false);

  Status record_add(const Request& req, NetnsId id,
                    const std::vector<std::string>& added_addresses = {});
  Status record_del(const AttachmentKey& key);
  // Rewrites the journal with exactly these registrations.
  Status compact(const std::vector<SavedRegistration>& live);

  // Handover: closes the journal and releases the state directory's lock.
  void close() {
    fd_.reset();
    lock_.reset();
  }

  size_t lines() const { return lines_; }
  const std::string& path() const { return path_; }

 private:
  StateJournal(std::string dir, std::string path, UniqueFd fd, size_t lines)
      : dir_(std::move(dir)), path_(std::move(path)), fd_(std::move(fd)), lines_(lines) {}
  Status append(const std::string& line);

  std::string dir_;
  std::string path_;
  UniqueFd fd_;
  UniqueFd lock_;
  size_t lines_ = 0;
  bool sync_ = false;
};

}  // namespace nsproxy
