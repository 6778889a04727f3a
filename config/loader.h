#pragma once
// Loads and validates a scalegate YAML file into config::Config.
// Every problem is reported as "file:line: key.path: what is wrong"; all problems in a file are
// collected, not just the first. Thread: any (pure function of the file).

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "config/model.h"

namespace scalegate::config {

struct ConfigError {
  std::string file;
  int line = 0;
  std::string key;               // dotted path: "pools.web.health.interval"
  std::string message;           // "bad duration \"5 parsecs\": unknown unit"
  std::string toString() const;  // "file:line: key: message"
};

struct LoadResult {
  Config config;
  std::vector<ConfigError> errors;  // empty on success
  bool ok() const { return errors.empty(); }
  std::string errorText() const;  // one error per line
};

// Reads the file at `path`.
LoadResult loadConfigFile(const std::string& path);
// Parses YAML text; `name` is used as the file name in errors.
LoadResult loadConfigText(std::string_view text, const std::string& name);

}  // namespace scalegate::config
