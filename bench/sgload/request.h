#pragma once
// RequestSet: every request sgload will send, built once before the run. HTTP/1.1 requests
// are complete byte strings (head + body) written as they are; HTTP/2 requests are nghttp2
// header arrays pointing into strings owned here (NO_COPY), so sending allocates nothing of
// ours. Immutable after construction and shared read-only by all workers.

#include <nghttp2/nghttp2.h>

#include <string>
#include <vector>

#include "bench/sgload/options.h"

namespace scalegate::bench {

class RequestSet {
 public:
  explicit RequestSet(const Options& options);

  size_t size() const { return h1_.size(); }
  const std::string& http1(size_t i) const { return h1_[i]; }
  size_t maxHttp1Size() const { return max_h1_; }
  const nghttp2_nv* http2Headers(size_t i) const { return h2_[i].data(); }
  size_t http2HeaderCount(size_t i) const { return h2_[i].size(); }
  const std::string& body() const { return body_; }
  bool isHead() const { return is_head_; }

 private:
  std::vector<std::string> h1_;
  size_t max_h1_ = 0;
  // Strings the nghttp2_nv entries point into; reserved up front so they never move.
  std::vector<std::string> storage_;
  std::vector<std::vector<nghttp2_nv>> h2_;
  std::string body_;
  bool is_head_ = false;
};

}  // namespace scalegate::bench
