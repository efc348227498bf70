// The pieces behind per-tenant limits: the token bucket (rate, burst, Retry-After), the
// intrusive list sessions queue themselves on, and the fair share of the budget.
#include <gtest/gtest.h>

#include "forward/connection_budget.h"
#include "forward/intrusive_list.h"
#include "forward/tenant.h"
#include "forward/token_bucket.h"

namespace nsproxy {
namespace {

TEST(TokenBucketTest, AdmitsTheBurstThenTheRate) {
  TokenBucket b;
  b.configure(2, 3, 100.0);
  EXPECT_TRUE(b.take(100.0));
  EXPECT_TRUE(b.take(100.0));
  EXPECT_TRUE(b.take(100.0));
  EXPECT_FALSE(b.take(100.0)) << "a fourth request within the same instant";
  EXPECT_EQ(b.retry_after(100.0), 1) << "2/s: a token is back in 0.5 s, rounded up";
  EXPECT_FALSE(b.take(100.4));
  EXPECT_TRUE(b.take(100.5));
  // A long quiet spell refills to the burst, never beyond it.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(b.take(200.0)) << i;
  EXPECT_FALSE(b.take(200.0));
}

TEST(TokenBucketTest, SlowRatesGiveLongerRetryAfter) {
  TokenBucket b;
  b.configure(0.25, 1, 0);
  EXPECT_TRUE(b.take(0));
  EXPECT_FALSE(b.take(0));
  EXPECT_EQ(b.retry_after(0), 4);
  EXPECT_EQ(b.retry_after(3.5), 1);
}

TEST(TokenBucketTest, RateZeroIsOff) {
  TokenBucket b;
  b.configure(0, 0, 0);
  EXPECT_FALSE(b.enabled());
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(b.take(0));
}

struct Item {
  int v;
  ListHook<Item> hook;
};

TEST(IntrusiveListTest, KeepsOrderAndUnlinksFromAnywhere) {
  IntrusiveList<Item> a, b;
  Item x{1, {}}, y{2, {}}, z{3, {}};
  a.push_back(&x);
  a.push_back(&y);
  a.push_back(&z);
  EXPECT_EQ(a.size(), 3u);
  EXPECT_EQ(a.front(), &x);
  unlink(&y);  // from the middle
  EXPECT_EQ(a.size(), 2u);
  EXPECT_EQ(y.hook.list, nullptr);
  b.push_back(&x);  // moves from a to b
  EXPECT_EQ(a.front(), &z);
  EXPECT_EQ(b.front(), &x);
  EXPECT_EQ(a.pop_front(), &z);
  EXPECT_TRUE(a.empty());
  unlink(&y);  // in no list: nothing happens
  a.push_back(&y);
  a.push_back(&z);
  a.remove(&z);  // the tail
  a.push_back(&z);
  EXPECT_EQ(a.pop_front(), &y);
  EXPECT_EQ(a.pop_front(), &z);
  EXPECT_EQ(a.pop_front(), nullptr);
}

// A session is in its listener's list and, at the same time, in one of its tenant's.
struct TwoHooks {
  int v;
  ListHook<TwoHooks> hook;
  ListHook<TwoHooks> other;
};

TEST(IntrusiveListTest, AnElementWithTwoHooksIsInTwoListsAtOnce) {
  IntrusiveList<TwoHooks> first;
  IntrusiveList<TwoHooks, &TwoHooks::other> second;
  TwoHooks x{1, {}, {}}, y{2, {}, {}};
  first.push_back(&x);
  first.push_back(&y);
  second.push_back(&y);
  second.push_back(&x);
  EXPECT_EQ(first.front(), &x);
  EXPECT_EQ(second.front(), &y);
  unlink(&y);  // the default hook: out of `first` only
  EXPECT_EQ(first.size(), 1u);
  EXPECT_EQ(second.size(), 2u);
  EXPECT_EQ(second.front(), &y);
  decltype(second)::unlink(&x);
  EXPECT_EQ(second.size(), 1u);
  EXPECT_EQ(first.front(), &x);
  EXPECT_EQ(x.hook.list, &first);
  EXPECT_EQ(x.other.list, nullptr);
}

TEST(ConnectionBudgetTest, FairShareCountsTheTenantsHoldingConnections) {
  ConnectionBudget budget;
  Tenant a, b, c;
  a.connections = 90;
  budget.add_holder(a);
  b.connections = 10;
  budget.add_holder(b);
  EXPECT_EQ(budget.fair_share(c, 100), 33u) << "c holds none: counted as a third";
  EXPECT_EQ(budget.fair_share(b, 100), 50u);
  // c cannot be given a slot: a is above its share but has nothing reclaimable.
  EXPECT_EQ(budget.donor_for(c, 100), nullptr);
  EXPECT_EQ(budget.donor_for(a, 100), nullptr) << "a is above its share itself";
  EXPECT_EQ(budget.fair_share(c, 2), 1u) << "more tenants than the budget: still one each";
  budget.remove_holder(a);
  EXPECT_EQ(budget.holders(), 1u);
  EXPECT_EQ(budget.fair_share(b, 100), 100u);
  budget.remove_holder(b);
  EXPECT_EQ(budget.holders(), 0u);
}

}  // namespace
}  // namespace nsproxy
