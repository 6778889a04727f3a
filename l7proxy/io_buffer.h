#pragma once
// Fixed-size byte buffers from a per-worker free list. Connections hold a buffer only while
// bytes are in flight and hand it back when empty, so an idle keep-alive connection holds no
// buffer at all (DESIGN.md: 10,000 idle connections must stay under 10 KB each).
// Worker thread only.

#include <cstdint>
#include <cstdlib>
#include <vector>

namespace scalegate::l7proxy {

struct IoBuffer {
  uint32_t start = 0;  // first unconsumed byte
  uint32_t end = 0;    // one past the last byte read
  uint32_t cap = 0;
  char* data() { return reinterpret_cast<char*>(this + 1); }
  uint32_t size() const { return end - start; }
  uint32_t room() const { return cap - end; }
  bool empty() const { return start == end; }
  char* begin() { return data() + start; }
  // Moves unconsumed bytes to the front so reads can fill the rest.
  void compact();
};

class BufferPool {
 public:
  explicit BufferPool(uint32_t buffer_bytes, uint32_t max_free = 1024)
      : buffer_bytes_(buffer_bytes), max_free_(max_free) {}
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  IoBuffer* get();
  void put(IoBuffer* b);
  // Changes the size of buffers handed out from now on (a reload raised a header limit).
  void setBufferBytes(uint32_t bytes);
  uint32_t bufferBytes() const { return buffer_bytes_; }
  size_t outstanding() const { return outstanding_; }

 private:
  uint32_t buffer_bytes_;
  uint32_t max_free_;
  size_t outstanding_ = 0;
  std::vector<IoBuffer*> free_;
};

// Returns the buffer to the pool when it is empty and sets the holder to null.
inline void releaseIfEmpty(BufferPool& pool, IoBuffer*& b) {
  if (b != nullptr && b->empty()) {
    pool.put(b);
    b = nullptr;
  }
}

}  // namespace scalegate::l7proxy
