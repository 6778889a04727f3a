#pragma once
// Durable small files for the control plane: the registry's state file (control/pool_registry.h)
// is read once at start and replaced atomically after every persisted change, so a crash or a
// full disk at any moment leaves either the old file or the new one, never a torn mix.
// Blocking file I/O on a small file; control thread.

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "config/model.h"

namespace scalegate::control {

// The whole file. kNotFound when it does not exist; kIo with the path and errno text otherwise.
Result<std::string> readWholeFile(const std::string& path);

// Replaces `path` with `contents`: writes `<path>.tmp`, fsyncs it, renames it over `path` and
// fsyncs the directory. On failure before the rename the old file is untouched and the
// temporary file is removed; the error names the file and the errno text
// ("write /var/lib/sg/state.json.tmp: No space left on device").
Status replaceFileAtomically(const std::string& path, std::string_view contents);

// Where the state file lives: admin.state_file, or "" = <config dir>/<config name>.state.json
// (/etc/scalegate/scalegate.yaml -> /etc/scalegate/scalegate.state.json).
std::string stateFilePath(const config::Config& cfg);

// Numbers in the JSON files the control plane writes for itself (autoscale state, outbox,
// rolling upgrade). nlohmann's get<uint32_t>() / get<int64_t>() convert a float such as 1e20
// with undefined behaviour, and milliseconds far from now overflow nanosecond clocks; these
// take only a JSON integer in range and otherwise throw nlohmann::json::type_error or
// out_of_range, like the at() and get() calls around them, so a loader's one catch reports it.
// A JSON integer in 0..UINT32_MAX.
uint32_t stateUint32(const nlohmann::json& j);
// Milliseconds, a Unix time or a duration: a JSON integer within ±kMaxStateMillis (about 200
// years either side of 1970: every time and duration the process writes, and small enough that
// nanosecond arithmetic on it against the clocks' current readings cannot overflow).
inline constexpr int64_t kMaxStateMillis = int64_t{200} * 365 * 24 * 3600 * 1000;
int64_t stateMillis(const nlohmann::json& j);

}  // namespace scalegate::control
