// nsproxyd: one daemon per host that serves listeners inside tenants' network
// namespaces and forwards their connections to upstreams in the host namespace.
#include "daemon.h"
#include "daemon_options.h"
#include "log.h"

int main(int argc, char** argv) {
  nsproxy::set_log_prefix("nsproxyd");
  nsproxy::Options opts;
  int rc = nsproxy::parse_options(argc, argv, &opts);
  if (rc != 0) return rc < 0 ? 0 : rc;
  nsproxy::Daemon daemon(std::move(opts));
  return daemon.run();
}
