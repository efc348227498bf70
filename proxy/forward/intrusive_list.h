// A doubly-linked list threaded through its elements: linking and unlinking cost no
// allocation, and an element unlinks itself in O(1) from wherever it is. An element is
// in at most one list per hook at a time. Like the upstream pool's idle list, but
// generic; a session uses one to queue itself (oldest idle keep-alive, oldest request
// head, waiting for an upstream slot) without a heap allocation per request.
#pragma once

#include <cstddef>

namespace nsproxy {

template <class T>
class IntrusiveList;

template <class T>
struct ListHook {
  T* prev = nullptr;
  T* next = nullptr;
  IntrusiveList<T>* list = nullptr;  // the list it is in, or null
};

// T has a public member `ListHook<T> hook`.
template <class T>
class IntrusiveList {
 public:
  IntrusiveList() = default;
  ~IntrusiveList() { clear(); }
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;

  bool empty() const { return head_ == nullptr; }
  size_t size() const { return size_; }
  T* front() const { return head_; }

  // Appends e (the newest); unlinks it from any list it is in first.
  void push_back(T* e) {
    if (e->hook.list != nullptr) e->hook.list->remove(e);
    e->hook.prev = tail_;
    e->hook.next = nullptr;
    e->hook.list = this;
    if (tail_ != nullptr) {
      tail_->hook.next = e;
    } else {
      head_ = e;
    }
    tail_ = e;
    ++size_;
  }

  // Unlinks e; it must be in this list.
  void remove(T* e) {
    if (e->hook.prev != nullptr) {
      e->hook.prev->hook.next = e->hook.next;
    } else {
      head_ = e->hook.next;
    }
    if (e->hook.next != nullptr) {
      e->hook.next->hook.prev = e->hook.prev;
    } else {
      tail_ = e->hook.prev;
    }
    e->hook = ListHook<T>{};
    --size_;
  }

  T* pop_front() {
    T* e = head_;
    if (e != nullptr) remove(e);
    return e;
  }

  void clear() {
    while (head_ != nullptr) remove(head_);
  }

 private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
  size_t size_ = 0;
};

// Unlinks e from whatever list it is in (no-op when in none).
template <class T>
void unlink(T* e) {
  if (e->hook.list != nullptr) e->hook.list->remove(e);
}

}  // namespace nsproxy
