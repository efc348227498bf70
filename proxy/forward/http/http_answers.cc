// HttpSession, what nsproxyd answers itself (errors, refusals with their counters and
// rate-limited log lines, the keep-alive 429) and the tenant's in-flight line.
#include <cerrno>
#include <cstring>

#include "forward/http/http_session.h"
#include "forward/listener.h"
#include "log.h"

namespace nsproxy {

bool HttpSession::acquire_slot() {
  Tenant& t = listener_->tenant();
  if (shard_->waiting.empty() && t.try_take_slot()) {
    holds_slot_ = true;
    return true;
  }
  // In line behind the tenant's other requests on this worker, for at most
  // --connect-timeout. Counted in line before trying once more: a slot released on
  // another worker meanwhile either is seen free here or sees this request waiting
  // (release_slot), never neither.
  join(shard_->waiting);
  t.in_line.fetch_add(1);
  restart_upstream_timer(worker_->config->connect_timeout);
  worker_->offer_slots(t);  // may grant this request (or one ahead of it) at once
  return false;
}

void HttpSession::leave_line() {
  if (hook.list != &shard_->waiting) return;
  unlink(this);
  listener_->tenant().in_line.fetch_sub(1);
}

void HttpSession::release_slot() {
  if (!holds_slot_) return;
  holds_slot_ = false;
  Tenant& t = listener_->tenant();
  if (Session* next = shard_->waiting.pop_front()) {
    t.in_line.fetch_sub(1);
    next->grant_slot();  // the slot passes on, on this worker
    return;
  }
  t.in_flight.fetch_sub(1);
  if (t.in_line.load() == 0) return;
  // Requests of this tenant wait on other workers: each tries for the free slot there.
  for (Worker* w : worker_->acceptor->workers()) {
    if (w == worker_ || t.find_shard(w->index) == nullptr) continue;
    w->post([w, tenant = t.shared_from_this()] { w->offer_slots(*tenant); });
  }
}

void HttpSession::grant_slot() {
  holds_slot_ = true;
  slot_granted_ = true;
  restart_upstream_timer(0);  // connects from its own callback, not from inside another's
}

bool HttpSession::respond_error(int status, const char* reason, const std::string& why,
                                long retry_after, bool log) {
  const bool m = ex_.method != nullptr;
  std::string_view url = req_fields_.start().substr(0, 200);
  if (log) {
    size_t quiet = shard_->refusal_log.suppressed;
    LOG_INFO_F(({{"tenant", listener_->tenant().id},
                 {"listen", listener_->spec().listen},
                 {"error", why}}),
               "tenant %s: %d %s: %s%s%s%s%.*s%s%s", listener_->tenant_name().c_str(), status,
               reason, why.c_str(), m ? " (" : "", m ? ex_.method : "", m ? " " : "",
               m ? static_cast<int>(url.size()) : 0, url.data(), m ? ")" : "",
               quiet == 0 ? ""
                          : (" (" + std::to_string(quiet) +
                             " more refusals of this tenant in the last second not logged)")
                                .c_str());
    shard_->refusal_log.suppressed = 0;
  }
  ex_.status = status;
  complete_response(status);
  release_upstream(false);
  end_request();
  to_upstream_.clear();
  client_in_.clear();
  if (!ex_.resp_started) {
    queue_own_response(status, reason, why, retry_after, /*close=*/true);
  }
  ex_.keep_alive = false;
  set_phase(Phase::kClosing);
  return pump();
}

bool HttpSession::answer_and_continue(int status, const char* reason, const std::string& why,
                                      long retry_after, bool log) {
  if (log) {
    LOG_INFO_F(({{"tenant", listener_->tenant().id},
                 {"listen", listener_->spec().listen},
                 {"error", why}}),
               "tenant %s: %d %s: %s", listener_->tenant_name().c_str(), status, reason,
               why.c_str());
  }
  to_upstream_.clear();  // the rewritten head never goes anywhere
  queue_own_response(status, reason, why, retry_after, /*close=*/!ex_.keep_alive);
  ex_.status = status;
  return finish_exchange();  // as after an upstream's response: the next request, or close
}

void HttpSession::queue_own_response(int status, const char* reason, const std::string& why,
                                     long retry_after, bool close) {
  std::string body = std::to_string(status) + " " + reason + ": " + why + "\n";
  to_client_.append(
      std::string(ex_.http10 ? "HTTP/1.0 " : "HTTP/1.1 ") + std::to_string(status) + " " + reason +
      "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
      (retry_after > 0 ? "\r\nRetry-After: " + std::to_string(retry_after) : "") +
      (close ? "\r\nConnection: close" : "") + "\r\n\r\n" + body);
  ex_.resp_started = true;
}

bool HttpSession::refuse(Refusal why, int status, const char* reason, const std::string& detail,
                         long retry_after) {
  shard_->stats.refuse(why);
  // One line per tenant (and worker) per second: a flood of refusals must not flood the
  // log too.
  return respond_error(status, reason, detail, retry_after,
                       shard_->refusal_log.allow(ev_now(loop_)));
}

}  // namespace nsproxy
