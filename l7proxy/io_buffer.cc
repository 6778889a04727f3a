#include "l7proxy/io_buffer.h"

#include <cstring>
#include <new>

namespace scalegate::l7proxy {

void IoBuffer::compact() {
  if (start == 0) return;
  uint32_t n = end - start;
  if (n > 0) std::memmove(data(), data() + start, n);
  start = 0;
  end = n;
}

BufferPool::~BufferPool() {
  for (IoBuffer* b : free_) std::free(b);
}

IoBuffer* BufferPool::get() {
  ++outstanding_;
  if (!free_.empty()) {
    IoBuffer* b = free_.back();
    free_.pop_back();
    b->start = b->end = 0;
    return b;
  }
  void* mem = std::malloc(sizeof(IoBuffer) + buffer_bytes_);
  if (mem == nullptr) throw std::bad_alloc();
  auto* b = new (mem) IoBuffer();
  b->cap = buffer_bytes_;
  return b;
}

void BufferPool::put(IoBuffer* b) {
  --outstanding_;
  if (b->cap != buffer_bytes_ || free_.size() >= max_free_) {
    std::free(b);
    return;
  }
  free_.push_back(b);
}

void BufferPool::setBufferBytes(uint32_t bytes) {
  if (bytes == buffer_bytes_) return;
  buffer_bytes_ = bytes;
  for (IoBuffer* b : free_) std::free(b);
  free_.clear();
}

}  // namespace scalegate::l7proxy
