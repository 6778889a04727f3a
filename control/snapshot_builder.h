#pragma once
// Builds the immutable Snapshot the data paths run on. Control thread.

#include <memory>
#include <vector>

#include "config/model.h"
#include "config/snapshot.h"

namespace scalegate::control {

// `previous` (may be null) carries member state over: a member that keeps its pool, id and
// address keeps its health and slow-start clock; a member new in this config starts its slow
// start at `now`. Members of the very first snapshot are not ramped (like HAProxy, slow start
// is not applied at process start).
std::shared_ptr<const config::Snapshot> buildSnapshot(
    std::shared_ptr<const config::Config> cfg, uint64_t generation,
    std::vector<config::ListenSockets> sockets, const config::Snapshot* previous, MonoTime now);

}  // namespace scalegate::control
