// http mode's head rewriting (forward/http/header_rules.h), without sockets: which
// headers the upstream and the tenant get, and how a response is framed.
#include "forward/http/header_rules.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "forward/byte_queue.h"
#include "forward/chunk_pool.h"
#include "forward/http/head_fields.h"

namespace nsproxy {
namespace {

struct Head {
  ChunkPool pool;
  HeadFields fields{&pool};
  Head(std::string_view start, const std::vector<std::pair<std::string, std::string>>& headers) {
    fields.add_start(start.data(), start.size());
    for (const auto& [n, v] : headers) {
      fields.add_name(n.data(), n.size());
      fields.add_value(v.data(), v.size());
    }
  }
};

std::string drain(ByteQueue& q) {
  std::string out;
  while (!q.empty()) {
    std::string_view f = q.front();
    out.append(f);
    q.consume(f.size());
  }
  return out;
}

const std::map<std::string, std::string> kLabels = {{"team", "blue"}};

Identity identity(std::string_view peer = "10.0.0.7") {
  Identity id;
  id.tenant_id = "c0ffee";
  id.labels = &kLabels;
  id.tenant_header = "X-Tenant-Id";
  id.label_header_prefix = "X-Tenant-Label-";
  id.default_tenant_header = "X-Tenant-Id";
  id.default_label_header_prefix = "X-Tenant-Label-";
  id.peer_ip = peer;
  return id;
}

TEST(HeaderRules, ForgedIdentityHeadersNeverReachTheUpstream) {
  Head h("/latest/meta-data", {{"Host", "169.254.169.254"},
                               {"X-Tenant-Id", "someone-else"},
                               {"x_tenant_id", "cgi-spelling"},
                               {"X-TENANT-LABEL-team", "red"},
                               {"X_Tenant_Label_Extra", "1"},
                               {"X-Forwarded-For", "1.2.3.4"},
                               {"Forwarded", "for=1.2.3.4"},
                               {"Accept", "*/*"}});
  ByteQueue q(&h.pool);
  append_request_head(&q, "GET", h.fields, RequestFraming{}, identity());
  EXPECT_EQ(drain(q),
            "GET /latest/meta-data HTTP/1.1\r\n"
            "Host: 169.254.169.254\r\n"
            "Accept: */*\r\n"
            "X-Tenant-Id: c0ffee\r\n"
            "X-Tenant-Label-team: blue\r\n"
            "X-Forwarded-For: 10.0.0.7\r\n"
            "Forwarded: for=10.0.0.7\r\n"
            "\r\n");
}

TEST(HeaderRules, ARegistrationsOwnHeaderNamesAndTheDaemonDefaultsAreBothStripped) {
  Head h("/", {{"X-Tenant-Id", "forged-default"}, {"X-Caller", "forged-own"}, {"X-Who-a", "x"}});
  Identity id = identity();
  id.tenant_header = "X-Caller";
  id.label_header_prefix = "X-Who-";
  ByteQueue q(&h.pool);
  append_request_head(&q, "GET", h.fields, RequestFraming{}, id);
  std::string head = drain(q);
  EXPECT_EQ(head.find("forged"), std::string::npos) << head;
  EXPECT_NE(head.find("X-Caller: c0ffee\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("X-Who-team: blue\r\n"), std::string::npos) << head;
  EXPECT_EQ(head.find("X-Who-a"), std::string::npos) << head;
}

TEST(HeaderRules, HopByHopAndConnectionListedHeadersAreDroppedAndFramingIsTheProxys) {
  Head h("/up", {{"Connection", "keep-alive, X-Secret"},
                 {"X-Secret", "s"},
                 {"Keep-Alive", "timeout=5"},
                 {"TE", "trailers"},
                 {"Transfer-Encoding", "chunked"},
                 {"Content-Length", "999"},
                 {"Proxy-Connection", "x"},
                 {"X-Kept", "k"}});
  RequestFraming framing;
  framing.chunked = true;
  ByteQueue q(&h.pool);
  append_request_head(&q, "POST", h.fields, framing, identity("fd00::7"));
  std::string head = drain(q);
  EXPECT_EQ(head.rfind("POST /up HTTP/1.1\r\nX-Kept: k\r\nX-Tenant-Id: c0ffee\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("Forwarded: for=\"[fd00::7]\"\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Transfer-Encoding: chunked\r\n\r\n"), std::string::npos) << head;
  for (const char* gone : {"X-Secret", "Keep-Alive", "TE:", "999", "Proxy-Connection"}) {
    EXPECT_EQ(head.find(gone), std::string::npos) << gone << " in\n" << head;
  }
}

// A head of thousands of headers, several Connection headers listing half of them in
// other cases and with repeats (the shape a 32 KB hostile head takes): exactly the
// listed ones are dropped, every other one is kept in order.
TEST(HeaderRules, EveryHeaderAnyConnectionHeaderListsIsDroppedWhateverItsCase) {
  std::vector<std::pair<std::string, std::string>> headers;
  std::string listed_a, listed_b;
  for (int i = 0; i < 3000; ++i) {
    headers.emplace_back("X-N" + std::to_string(i), "v");
    if (i % 2 == 0) {
      std::string& list = i % 4 == 0 ? listed_a : listed_b;
      list += (i % 3 == 0 ? "x-n" : "X-N") + std::to_string(i) + " ,\t";
    }
  }
  headers.emplace_back("Connection", listed_a + "keep-alive");
  headers.emplace_back("connection", listed_b + "X-N0, x-n2");
  Head h("/many", headers);
  ByteQueue q(&h.pool);
  append_request_head(&q, "GET", h.fields, RequestFraming{}, identity());
  std::string expected = "GET /many HTTP/1.1\r\n";
  for (int i = 1; i < 3000; i += 2) expected += "X-N" + std::to_string(i) + ": v\r\n";
  std::string head = drain(q);
  EXPECT_EQ(head.substr(0, expected.size()), expected);
  EXPECT_EQ(head.find("X-N0:"), std::string::npos);
  EXPECT_EQ(head.find("X-N2998:"), std::string::npos);
  EXPECT_NE(head.find("\r\nX-Tenant-Id: c0ffee\r\n"), std::string::npos);
}

TEST(HeaderRules, AnUpgradeKeepsItsUpgradeHeaders) {
  Head h("/ws", {{"Connection", "Upgrade"}, {"Upgrade", "websocket"}});
  RequestFraming framing;
  framing.upgrade = true;
  ByteQueue q(&h.pool);
  append_request_head(&q, "GET", h.fields, framing, identity());
  std::string head = drain(q);
  EXPECT_NE(head.find("Upgrade: websocket\r\nConnection: upgrade\r\n\r\n"), std::string::npos)
      << head;
}

TEST(HeaderRules, HeaderNamesAreTokensAndOnlyPlainChunkedIsAccepted) {
  EXPECT_TRUE(valid_header_name_piece("X-Tenant_Id"));
  EXPECT_FALSE(valid_header_name_piece("Host "));
  EXPECT_FALSE(valid_header_name_piece("Ho\tst"));
  EXPECT_TRUE(chunked_only(Head("/", {{"Transfer-Encoding", " chunked "}}).fields));
  EXPECT_FALSE(chunked_only(Head("/", {{"Transfer-Encoding", "gzip, chunked"}}).fields));
  EXPECT_FALSE(chunked_only(
      Head("/", {{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}).fields));
}

TEST(HeaderRules, ResponseFramingAndKeepAlive) {
  ResponseFacts r;
  r.status = 200;
  r.chunked = true;
  ResponsePlan p = plan_response(r, true);
  EXPECT_TRUE(p.chunked_out);
  EXPECT_TRUE(p.keep_alive);

  r.http10 = true;  // an HTTP/1.0 tenant cannot read chunks: raw, ended by the close
  p = plan_response(r, true);
  EXPECT_FALSE(p.chunked_out);
  EXPECT_FALSE(p.keep_alive);

  ResponseFacts until_close;
  until_close.status = 200;  // neither chunked nor a length: the body ends with the close
  EXPECT_FALSE(plan_response(until_close, true).keep_alive);

  ResponseFacts head;
  head.status = 200;
  head.head_request = true;  // no body whatever the framing
  EXPECT_TRUE(plan_response(head, true).keep_alive);

  ResponseFacts refused;
  refused.status = 400;
  refused.has_length = true;
  refused.upgrade_requested = true;  // an upgrade the upstream refused
  EXPECT_FALSE(plan_response(refused, true).keep_alive);
  EXPECT_FALSE(plan_response(head, false).keep_alive);  // the request asked to close
}

TEST(HeaderRules, TheTenantGetsTheResponseHeadWithTheProxysFraming) {
  Head h("OK", {{"Content-Type", "text/plain"},
                {"Transfer-Encoding", "chunked"},
                {"Connection", "X-Hop"},
                {"X-Hop", "1"}});
  ResponseFacts r;
  r.status = 200;
  r.chunked = true;
  r.http10 = true;
  ResponsePlan plan = plan_response(r, true);
  ByteQueue q(&h.pool);
  append_response_head(&q, h.fields, r, plan);
  EXPECT_EQ(drain(q), "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n");

  Head len("Not Modified", {{"Content-Length", "42"}});
  ResponseFacts nm;
  nm.status = 304;
  nm.has_length = true;
  nm.content_length = 42;
  append_response_head(&q, len.fields, nm, plan_response(nm, true));
  // 304 reports the entity's length and has no body.
  EXPECT_EQ(drain(q), "HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n");
}

TEST(HeaderRules, BodyPiecesAreFramedAsChunksOnlyWhenChunked) {
  ChunkPool pool;
  ByteQueue q(&pool);
  append_body(&q, "hello, world!!!!", true);  // 16 bytes: "10" in hex
  append_body(&q, "", false);
  append_body(&q, "raw", false);
  EXPECT_EQ(drain(q), "10\r\nhello, world!!!!\r\nraw");
}

}  // namespace
}  // namespace nsproxy
