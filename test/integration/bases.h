// Base classes of the test fixtures: IntegrationTest (skips loudly when not root),
// HttpTest, and the fixtures of the suites whose tests are spread over several files.
#pragma once

#include <gtest/gtest.h>

#include "scratch.h"

namespace nspit {

// Skips loudly when not root.
class IntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override;
};

// Base for http tests: root check, the programs, a temp dir.
class HttpTest : public IntegrationTest {
 protected:
  void SetUp() override;
  TempDir tmp_;
};

// The suites DaemonTest and LifecycleTest have tests in several files, each file named
// for what its tests cover. GoogleTest wants one fixture class per suite, so theirs are
// defined here, once.

// nsproxyd built, a temp dir for its socket and state.
class DaemonTest : public IntegrationTest {
 protected:
  void SetUp() override;
  TempDir tmp_;
};

// nsproxyd, the plugin, nsproxyctl and nsproxy-echo built, a temp dir.
class LifecycleTest : public IntegrationTest {
 protected:
  void SetUp() override;
  TempDir tmp_;
};

}  // namespace nspit
