// A doubly-linked list threaded through its elements: linking and unlinking cost no
// allocation, and an element unlinks itself in O(1) from wherever it is. An element is
// in at most one list per hook at a time. Like the upstream pool's idle list, but
// generic; a session uses one to queue itself (oldest idle keep-alive, oldest request
// head, waiting for an upstream slot) without a heap allocation per request.
#pragma once

#include <atomic>
#include <cstddef>

namespace nsproxy {

template <class T>
struct ListHook {
  using element_type = T;
  T* prev = nullptr;
  T* next = nullptr;
  void* list = nullptr;  // the IntrusiveList (of this hook) it is in, or null
};

// Hook: the member of T this list threads through (by default `ListHook<T> hook`); an
// element with two hooks can be in two lists at once, one per hook.
template <class T, ListHook<T> T::*Hook = &T::hook>
class IntrusiveList {
 public:
  IntrusiveList() = default;
  ~IntrusiveList() { clear(); }
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;

  bool empty() const { return head_ == nullptr; }
  // The one thread that changes the list reads anything; another thread may read size()
  // only (a relaxed atomic with a single writer: the main thread reads how many idle
  // connections and request heads a tenant has on a worker, connection_budget.h).
  size_t size() const { return size_.load(std::memory_order_relaxed); }
  T* front() const { return head_; }

  // Appends e (the newest); unlinks it from any list of this hook it is in first.
  void push_back(T* e) {
    ListHook<T>& h = e->*Hook;
    if (h.list != nullptr) static_cast<IntrusiveList*>(h.list)->remove(e);
    h.prev = tail_;
    h.next = nullptr;
    h.list = this;
    if (tail_ != nullptr) {
      (tail_->*Hook).next = e;
    } else {
      head_ = e;
    }
    tail_ = e;
    size_.store(size() + 1, std::memory_order_relaxed);
  }

  // Unlinks e; it must be in this list.
  void remove(T* e) {
    ListHook<T>& h = e->*Hook;
    if (h.prev != nullptr) {
      (h.prev->*Hook).next = h.next;
    } else {
      head_ = h.next;
    }
    if (h.next != nullptr) {
      (h.next->*Hook).prev = h.prev;
    } else {
      tail_ = h.prev;
    }
    h = ListHook<T>{};
    size_.store(size() - 1, std::memory_order_relaxed);
  }

  T* pop_front() {
    T* e = head_;
    if (e != nullptr) remove(e);
    return e;
  }

  void clear() {
    while (head_ != nullptr) remove(head_);
  }

  // Unlinks e from whatever list of this hook it is in (no-op when in none).
  static void unlink(T* e) {
    if ((e->*Hook).list != nullptr) static_cast<IntrusiveList*>((e->*Hook).list)->remove(e);
  }

 private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
  std::atomic<size_t> size_{0};
};

// Unlinks e from whatever list of its default hook it is in (no-op when in none); e may
// be of a class derived from the one declaring the hook.
template <class T>
void unlink(T* e) {
  using Base = typename decltype(e->hook)::element_type;
  IntrusiveList<Base>::unlink(static_cast<Base*>(e));
}

}  // namespace nsproxy
