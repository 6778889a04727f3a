// OpenSSL's thread-local error queue as one message, for Status texts and command-line errors.
#pragma once

#include <string>
#include <string_view>

namespace scalegate {

// Takes every queued OpenSSL error (oldest first, joined by "; ") and leaves the queue empty;
// `if_none` when nothing was queued (e.g. a peer that closed during a handshake).
std::string takeOpensslErrors(std::string_view if_none = "unknown OpenSSL error");

}  // namespace scalegate
