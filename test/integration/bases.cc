#include "bases.h"

#include <unistd.h>

#include "programs.h"

namespace nspit {

void IntegrationTest::SetUp() {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "\n\n*** SKIPPED: integration tests need root (network namespaces). ***\n"
                    "*** Run them as root; CI must not skip them. ***\n";
  }
}

void HttpTest::SetUp() {
  IntegrationTest::SetUp();
  if (IsSkipped()) return;
  ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy-echo"}));
}

void DaemonTest::SetUp() {
  IntegrationTest::SetUp();
  if (IsSkipped()) return;
  ASSERT_TRUE(binaries_exist({"nsproxyd"}));
}

void LifecycleTest::SetUp() {
  IntegrationTest::SetUp();
  if (IsSkipped()) return;
  ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy", "nsproxyctl", "nsproxy-echo"}));
}

}  // namespace nspit
