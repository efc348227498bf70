// Base classes of the test fixtures: IntegrationTest (skips loudly when not root) and
// HttpTest.
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

}  // namespace nspit
