#pragma once
// ResponseParser: an incremental HTTP/1.x response parser for sgload's hot path. It never
// copies or allocates: the caller keeps unconsumed bytes (an incomplete head) in its read
// buffer and feeds them again with more data appended. Bodies are only counted, never stored.
//
// Handles: status line, Content-Length, chunked coding (extensions, trailers), bodies that
// end at EOF, 1xx interim responses, HEAD/204/304 without body, Connection keep-alive/close
// and HTTP/1.0 defaults. Responses may be split across reads anywhere, and one read may hold
// several responses (pipelining).

#include <cstddef>
#include <cstdint>

namespace scalegate::bench {

class ResponseParser {
 public:
  enum class Step {
    kNeedMore,  // all of the input that can be used was consumed; feed more
    kComplete,  // one response ended; status()/keepAlive() describe it; call reset()
    kError,     // not HTTP/1.x: a protocol error
  };

  static constexpr size_t kMaxHead = 32 * 1024;

  // Starts a new response. head_request: the request was HEAD (no body follows).
  void reset(bool head_request = false);
  // Consumes from data[0, len); *consumed says how much. An incomplete head consumes nothing.
  Step feed(const char* data, size_t len, size_t* consumed);
  // The connection hit EOF: kComplete when the body was close-delimited, else kError.
  bool completesOnEof() const { return state_ == State::kBodyUntilEof; }
  // Some bytes of the current response were seen (used to tell a reset mid-response).
  bool started() const { return state_ != State::kHead; }

  int status() const { return status_; }
  bool keepAlive() const { return keep_alive_; }

 private:
  enum class State {
    kHead,
    kBody,
    kChunkSize,
    kChunkExt,
    kChunkSizeLf,
    kChunkData,
    kChunkDataCr,
    kChunkDataLf,
    kTrailerLineStart,
    kTrailerLine,
    kTrailerLf,
    kFinalLf,
    kBodyUntilEof,
  };

  Step parseHead(const char* data, size_t len, size_t* consumed);
  Step feedChunked(const char* data, size_t len, size_t* consumed);

  State state_ = State::kHead;
  bool head_request_ = false;
  bool keep_alive_ = true;
  int status_ = 0;
  uint64_t remaining_ = 0;  // body or chunk bytes still to come
  size_t scanned_ = 0;      // head bytes already searched for the blank line
};

}  // namespace scalegate::bench
