#include "control/handover.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "control_protocol.h"
#include "control_transport.h"
#include "log.h"

namespace nsproxy {
namespace {

using nlohmann::json;

void set_timeouts(int fd, std::chrono::milliseconds t) {
  timeval tv{static_cast<time_t>(t.count() / 1000),
             static_cast<suseconds_t>((t.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

}  // namespace

Status send_handover(int client_fd, const Registry& registry, int control_fd) {
  // A handful of small datagrams per registration: send them blocking, bounded.
  int flags = ::fcntl(client_fd, F_GETFL);
  ::fcntl(client_fd, F_SETFL, flags & ~O_NONBLOCK);
  set_timeouts(client_fd, std::chrono::milliseconds(5000));
  auto items = registry.handover_items();
  for (const auto& item : items) {
    if (Status s = send_message_fds(client_fd, item.payload, item.fds); !s) return s;
  }
  std::string done = json{{"done", true}, {"registrations", items.size()}}.dump();
  return send_message_fds(client_fd, done, {control_fd});
}

Result<UniqueFd> receive_handover(const std::string& socket_path, Registry* registry,
                                  std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    return make_error(Code::kHandover, "socket path too long: " + socket_path);
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sock) return errno_error(Code::kHandover, "socket");
  set_timeouts(sock.get(), timeout);
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == ENOENT || errno == ECONNREFUSED) {
      return errno_error(Code::kNoDaemon, "no nsproxyd on " + socket_path);
    }
    return errno_error(Code::kHandover, "connect " + socket_path);
  }
  if (Status s = send_message(sock.get(), R"({"version":1,"op":"handover"})"); !s) {
    return make_error(Code::kHandover, "send: " + s.error().message);
  }
  size_t taken = 0;
  for (;;) {
    auto msg = recv_message(sock.get(), kMaxMessageSize, kMaxPassedFds);
    if (!msg) {
      return make_error(Code::kHandover, "the running nsproxyd stopped answering after " +
                                             std::to_string(taken) +
                                             " registration(s): " + msg.error().message);
    }
    json j = json::parse(msg->payload, nullptr, false);
    if (!j.is_object()) return make_error(Code::kHandover, "undecodable handover message");
    if (j.contains("error")) {
      return make_error(Code::kHandover, "the running nsproxyd refused: " + j["error"].dump());
    }
    if (j.value("done", false)) {
      if (!msg->fd) return make_error(Code::kHandover, "no control socket in the final message");
      LOG_INFO("took over %zu registration(s) and the control socket", taken);
      return std::move(msg->fd);
    }
    auto req = decode_request(j.value("registration", json::object()).dump());
    if (!req || !msg->fd) {
      LOG_ERROR("handover: unusable registration message; skipped");
      continue;
    }
    NetnsId id;
    id.dev = static_cast<dev_t>(j.value("dev", uint64_t{0}));
    id.ino = static_cast<ino_t>(j.value("ino", uint64_t{0}));
    // msg->fd is the namespace: the listeners keep it alive, so it is closed here.
    Reply r = registry->take_over(*req, id, std::move(msg->more_fds), added_addresses_from(j));
    if (!r.ok) {
      LOG_ERROR("handover: %s: %s", req->attachment.display().c_str(), r.error.message.c_str());
      continue;
    }
    ++taken;
  }
}

}  // namespace nsproxy
