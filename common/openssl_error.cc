#include "common/openssl_error.h"

#include <openssl/err.h>

namespace scalegate {

std::string takeOpensslErrors(std::string_view if_none) {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string(if_none) : out;
}

}  // namespace scalegate
