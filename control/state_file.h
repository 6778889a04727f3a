#pragma once
// Durable small files for the control plane: the registry's state file (control/pool_registry.h)
// is read once at start and replaced atomically after every persisted change, so a crash or a
// full disk at any moment leaves either the old file or the new one, never a torn mix.
// Blocking file I/O on a small file; control thread.

#include <string>
#include <string_view>

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

}  // namespace scalegate::control
