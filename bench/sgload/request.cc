#include "bench/sgload/request.h"

#include <algorithm>
#include <string_view>

namespace scalegate::bench {
namespace {

std::string lowerCase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

RequestSet::RequestSet(const Options& o) : body_(o.body), is_head_(o.method == "HEAD") {
  // Split the user's headers once; note the ones that replace our defaults.
  std::vector<std::pair<std::string, std::string>> extra;
  bool user_host = false, user_length = false, user_agent = false;
  for (const std::string& h : o.headers) {
    const size_t colon = h.find(':');
    std::string name(trim(std::string_view(h).substr(0, colon)));
    std::string value(trim(std::string_view(h).substr(colon + 1)));
    const std::string lname = lowerCase(name);
    if (lname == "host") user_host = true;
    if (lname == "content-length") user_length = true;
    if (lname == "user-agent") user_agent = true;
    extra.emplace_back(std::move(name), std::move(value));
  }
  const bool send_length = !body_.empty() || o.method == "POST" || o.method == "PUT";

  for (const std::string& path : o.paths) {
    std::string r;
    r += o.method + " " + path + " HTTP/1.1\r\n";
    if (!user_host) r += "Host: " + o.authority + "\r\n";
    if (!user_agent) r += "User-Agent: sgload\r\n";
    for (const auto& [name, value] : extra) r += name + ": " + value + "\r\n";
    if (send_length && !user_length)
      r += "Content-Length: " + std::to_string(body_.size()) + "\r\n";
    r += "\r\n";
    r += body_;
    max_h1_ = std::max(max_h1_, r.size());
    h1_.push_back(std::move(r));
  }

  // HTTP/2: pseudo-headers, then the user's headers in lower case minus connection-specific
  // ones (RFC 9113 §8.2.2); a user Host becomes :authority.
  std::string authority = o.authority;
  for (const auto& [name, value] : extra)
    if (lowerCase(name) == "host") authority = value;
  storage_.reserve(16 + 2 * extra.size() + o.paths.size() + 8);
  auto keep = [this](std::string s) -> const std::string& {
    storage_.push_back(std::move(s));
    return storage_.back();
  };
  const std::string& k_method = keep(":method");
  const std::string& k_scheme = keep(":scheme");
  const std::string& k_authority = keep(":authority");
  const std::string& k_path = keep(":path");
  const std::string& v_method = keep(o.method);
  const std::string& v_scheme = keep(o.tls ? "https" : "http");
  const std::string& v_authority = keep(authority);
  std::vector<std::pair<const std::string*, const std::string*>> common;
  if (!user_agent) common.emplace_back(&keep("user-agent"), &keep("sgload"));
  for (const auto& [name, value] : extra) {
    const std::string lname = lowerCase(name);
    if (lname == "host" || lname == "connection" || lname == "keep-alive" ||
        lname == "proxy-connection" || lname == "transfer-encoding" || lname == "upgrade")
      continue;
    common.emplace_back(&keep(lname), &keep(value));
  }
  if (send_length && !user_length)
    common.emplace_back(&keep("content-length"), &keep(std::to_string(body_.size())));
  auto nv = [](const std::string& n, const std::string& v) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                      NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
  };
  for (const std::string& path : o.paths) {
    const std::string& v_path = keep(path);
    std::vector<nghttp2_nv> headers;
    headers.push_back(nv(k_method, v_method));
    headers.push_back(nv(k_scheme, v_scheme));
    headers.push_back(nv(k_authority, v_authority));
    headers.push_back(nv(k_path, v_path));
    for (const auto& [n, v] : common) headers.push_back(nv(*n, *v));
    h2_.push_back(std::move(headers));
  }
}

}  // namespace scalegate::bench
