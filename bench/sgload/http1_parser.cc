#include "bench/sgload/http1_parser.h"

#include <cstring>
#include <string_view>

namespace scalegate::bench {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool equalsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != b[i]) return false;  // b is lower case
  return true;
}

// True when the comma-separated list holds token (lower case), ignoring case and spaces.
bool listHas(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (equalsNoCase(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

void ResponseParser::reset(bool head_request) {
  state_ = State::kHead;
  head_request_ = head_request;
  keep_alive_ = true;
  status_ = 0;
  remaining_ = 0;
  scanned_ = 0;
}

ResponseParser::Step ResponseParser::feed(const char* data, size_t len, size_t* consumed) {
  *consumed = 0;
  switch (state_) {
    case State::kHead:
      return parseHead(data, len, consumed);
    case State::kBody: {
      const uint64_t take = remaining_ < len ? remaining_ : len;
      *consumed = static_cast<size_t>(take);
      remaining_ -= take;
      return remaining_ == 0 ? Step::kComplete : Step::kNeedMore;
    }
    case State::kBodyUntilEof:
      *consumed = len;
      return Step::kNeedMore;
    default:
      return feedChunked(data, len, consumed);
  }
}

ResponseParser::Step ResponseParser::parseHead(const char* data, size_t len, size_t* consumed) {
  // Find the blank line ending the head; resume the search where the last feed stopped.
  size_t from = scanned_ >= 3 ? scanned_ - 3 : 0;
  const char* end = nullptr;
  while (from + 4 <= len) {
    const void* cr = std::memchr(data + from, '\r', len - from - 3);
    if (cr == nullptr) break;
    const char* p = static_cast<const char*>(cr);
    if (p[1] == '\n' && p[2] == '\r' && p[3] == '\n') {
      end = p + 4;
      break;
    }
    from = static_cast<size_t>(p - data) + 1;
  }
  if (end == nullptr) {
    scanned_ = len;
    return len >= kMaxHead ? Step::kError : Step::kNeedMore;
  }
  const size_t head_len = static_cast<size_t>(end - data);
  std::string_view head(data, head_len - 2);  // keeps the last header's CRLF

  // Status line: HTTP/1.x SSS reason
  if (head.size() < 12 || head.substr(0, 7) != "HTTP/1." || head[8] != ' ') return Step::kError;
  const bool http10 = head[7] == '0';
  if (!http10 && head[7] != '1') return Step::kError;
  if (head[9] < '1' || head[9] > '5' || head[10] < '0' || head[10] > '9' || head[11] < '0' ||
      head[11] > '9')
    return Step::kError;
  status_ = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
  keep_alive_ = !http10;

  bool chunked = false;
  bool have_length = false;
  uint64_t length = 0;
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    const size_t line_start = pos + 2;
    const size_t line_end = head.find("\r\n", line_start);
    if (line_end == std::string_view::npos) return Step::kError;
    std::string_view line = head.substr(line_start, line_end - line_start);
    pos = line_end;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return Step::kError;
    std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    switch (name.size()) {
      case 14:
        if (equalsNoCase(name, "content-length")) {
          if (value.empty()) return Step::kError;
          uint64_t v = 0;
          for (char c : value) {
            if (c < '0' || c > '9' || v > (UINT64_MAX - 9) / 10) return Step::kError;
            v = v * 10 + static_cast<uint64_t>(c - '0');
          }
          if (have_length && v != length) return Step::kError;
          have_length = true;
          length = v;
        }
        break;
      case 17:
        if (equalsNoCase(name, "transfer-encoding")) chunked = listHas(value, "chunked");
        break;
      case 10:
        if (equalsNoCase(name, "connection")) {
          if (listHas(value, "close")) keep_alive_ = false;
          if (listHas(value, "keep-alive")) keep_alive_ = true;
        }
        break;
      default:
        break;
    }
  }
  *consumed = head_len;
  scanned_ = 0;

  if (status_ < 200) {  // interim (100 Continue, 103): the real response follows
    return Step::kNeedMore;
  }
  if (head_request_ || status_ == 204 || status_ == 304) return Step::kComplete;
  if (chunked) {
    state_ = State::kChunkSize;
    remaining_ = 0;
    return feedChunked(data + head_len, len - head_len, consumed);
  }
  if (have_length) {
    if (length == 0) return Step::kComplete;
    state_ = State::kBody;
    remaining_ = length;
    size_t more = 0;
    const Step step = feed(data + head_len, len - head_len, &more);
    *consumed += more;
    return step;
  }
  state_ = State::kBodyUntilEof;
  keep_alive_ = false;
  *consumed = len;
  return Step::kNeedMore;
}

ResponseParser::Step ResponseParser::feedChunked(const char* data, size_t len, size_t* consumed) {
  size_t i = 0;
  Step step = Step::kNeedMore;
  while (i < len) {
    const char c = data[i];
    switch (state_) {
      case State::kChunkSize: {
        const int h = hexValue(c);
        if (h >= 0) {
          if (remaining_ > (UINT64_MAX >> 4)) return Step::kError;
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(h);
        } else if (c == ';' || c == ' ' || c == '\t') {
          state_ = State::kChunkExt;
        } else if (c == '\r') {
          state_ = State::kChunkSizeLf;
        } else {
          return Step::kError;
        }
        ++i;
        break;
      }
      case State::kChunkExt:
        if (c == '\r') state_ = State::kChunkSizeLf;
        ++i;
        break;
      case State::kChunkSizeLf:
        if (c != '\n') return Step::kError;
        state_ = remaining_ == 0 ? State::kTrailerLineStart : State::kChunkData;
        ++i;
        break;
      case State::kChunkData: {
        const uint64_t avail = len - i;
        const uint64_t take = remaining_ < avail ? remaining_ : avail;
        i += static_cast<size_t>(take);
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::kChunkDataCr;
        break;
      }
      case State::kChunkDataCr:
        if (c != '\r') return Step::kError;
        state_ = State::kChunkDataLf;
        ++i;
        break;
      case State::kChunkDataLf:
        if (c != '\n') return Step::kError;
        state_ = State::kChunkSize;
        ++i;
        break;
      case State::kTrailerLineStart:
        state_ = c == '\r' ? State::kFinalLf : State::kTrailerLine;
        ++i;
        break;
      case State::kTrailerLine:
        if (c == '\r') state_ = State::kTrailerLf;
        ++i;
        break;
      case State::kTrailerLf:
        if (c != '\n') return Step::kError;
        state_ = State::kTrailerLineStart;
        ++i;
        break;
      case State::kFinalLf:
        if (c != '\n') return Step::kError;
        ++i;
        *consumed += i;
        state_ = State::kHead;
        return Step::kComplete;
      default:
        return Step::kError;
    }
  }
  *consumed += i;
  return step;
}

}  // namespace scalegate::bench
