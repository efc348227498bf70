// Control protocol size limits (README, "Control protocol": one JSON datagram per
// request and per reply, requests at most 4 MiB, replies at most 4 MiB; shared/
// control_protocol.h: kMaxMessageSize, kMaxReplySize, error code too_large).
#include <poll.h>

#include <cstdio>

#include "control_transport.h"
#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

// Sends one raw datagram and decodes the one reply. Error text when there is none.
nsproxy::Result<nsproxy::Reply> exchange_raw(const std::string& socket,
                                             const std::string& payload) {
  auto fd = connect_control(socket);
  if (!fd) return nsproxy::make_error(nsproxy::Code::kUnreachable, "cannot connect to " + socket);
  if (auto s = nsproxy::send_message(fd.get(), payload); !s) return s.error();
  pollfd p{fd.get(), POLLIN, 0};
  if (::poll(&p, 1, 10000) <= 0)
    return nsproxy::make_error(nsproxy::Code::kTimeout, "no reply within 10 s");
  auto msg = nsproxy::recv_message(fd.get(), nsproxy::kMaxReplySize);
  if (!msg) return nsproxy::make_error(msg.error().code, "no reply: " + msg.error().message);
  auto reply = nsproxy::decode_reply(msg->payload);
  if (!reply) return reply.error();
  return reply;
}

class ControlLimitsTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxyctl"}));
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    ASSERT_TRUE(daemon_->start());
  }
  TempDir tmp_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(ControlLimitsTest, ARequestOfExactlyTheLimitIsServedAndOneByteMoreIsTooLarge) {
  nsproxy::Request status;
  status.op = nsproxy::Op::Status;
  std::string at_limit = nsproxy::encode_request(status);
  ASSERT_LT(at_limit.size(), nsproxy::kMaxMessageSize);
  at_limit.resize(nsproxy::kMaxMessageSize, ' ');  // JSON whitespace: still the same request

  auto ok = exchange_raw(daemon_->socket_path(), at_limit);
  ASSERT_TRUE(ok.ok()) << ok.error().code << ": " << ok.error().message;
  EXPECT_TRUE(ok->ok) << "a request of exactly 4 MiB was refused: " << ok->error.code << ": "
                      << ok->error.message;
  EXPECT_EQ(ok->data.value("pid", 0), daemon_->pid());

  auto over = exchange_raw(daemon_->socket_path(), at_limit + " ");
  ASSERT_TRUE(over.ok()) << "no error reply for a request over the limit: " << over.error().code
                         << ": " << over.error().message;
  EXPECT_FALSE(over->ok);
  EXPECT_EQ(over->error.code, nsproxy::Code::kTooLarge) << over->error.message;
  EXPECT_NE(over->error.message.find(std::to_string(nsproxy::kMaxMessageSize)), std::string::npos)
      << over->error.message;

  // Refusing it cost nothing: the daemon serves on.
  auto after = daemon_->call(status);
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_TRUE(after->ok);
}

// A list of every registration is one reply. Replies up to the limit arrive whole; a
// reply beyond it is answered with too_large (naming the limit), never with a silently
// closed connection, and nsproxyctl reports it.
TEST_F(ControlLimitsTest, ListRepliesArriveUpToTheReplyLimitAndBeyondItAreTooLarge) {
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  // About 66 KB of labels per registration: 64 labels of 1000 bytes.
  std::map<std::string, std::string> labels;
  for (int i = 0; i < 64; ++i) {
    char key[8];
    std::snprintf(key, sizeof key, "k%02d", i);
    labels[key] = std::string(1000, static_cast<char>('a' + i % 26));
  }
  auto add = [&](int i) {
    nsproxy::ListenerSpec spec{"127.0.0.1:" + std::to_string(20000 + i), "127.0.0.1:9",
                               nsproxy::Mode::Tcp};
    return register_tenant(*daemon_, ns.path(), "big-" + std::to_string(i),
                           {.listeners = {spec}, .labels = labels});
  };
  nsproxy::Request list;
  list.op = nsproxy::Op::List;
  auto list_reply = [&]() { return daemon_->call(list, -1, 30000ms); };

  // Well below the limit first (about 3.3 MB).
  int n = 0;
  for (; n < 50; ++n) ASSERT_TRUE(add(n));
  size_t largest = 0;
  nsproxy::Result<nsproxy::Reply> r = list_reply();
  // Then one registration at a time until the list no longer fits.
  for (; n < 100; ++n) {
    ASSERT_TRUE(r.ok()) << "list of " << n << " registrations: no reply: " << r.error().code << ": "
                        << r.error().message;
    if (!r->ok) break;
    ASSERT_EQ(r->data["registrations"].size(), static_cast<size_t>(n));
    largest = nsproxy::encode_reply(*r).size();
    ASSERT_TRUE(add(n));
    r = list_reply();
  }
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_FALSE(r->ok) << "100 registrations of 66 KB still fit in one reply";
  EXPECT_EQ(r->error.code, nsproxy::Code::kTooLarge) << r->error.message;
  EXPECT_NE(r->error.message.find(std::to_string(nsproxy::kMaxReplySize)), std::string::npos)
      << r->error.message;
  EXPECT_GT(largest, nsproxy::kMaxReplySize - 2 * 70 * 1024)
      << "the largest list delivered was far below the limit";
  EXPECT_LE(largest, nsproxy::kMaxReplySize);

  auto ctl = run({binary("nsproxyctl"), "--socket", daemon_->socket_path(), "list"}, 30000ms);
  EXPECT_EQ(ctl.exit_code, 1) << ctl.describe();
  EXPECT_NE(ctl.err.find("(too_large)"), std::string::npos) << ctl.describe();

  // Everything else still works; one registration fewer and the list fits again.
  nsproxy::Request del;
  del.op = nsproxy::Op::Del;
  del.attachment.id = "big-" + std::to_string(n - 1);
  auto d = daemon_->call(del);
  ASSERT_TRUE(d.ok() && d->ok);
  auto again = list_reply();
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->ok) << again->error.message;
}

}  // namespace
}  // namespace nspit
