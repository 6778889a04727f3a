#pragma once
// Passive outlier detection, control side. Workers count consecutive failures per member and
// raise `outlier_signals` (l7proxy/stats.h) when a pool's threshold is reached; this looks at
// those signals on each control tick and ejects the member for
// min(base_ejection × times ejected, max_ejection), never ejecting more than
// max_ejection_percent of a pool (at least one member may always go), and brings members back
// when their time is up. Control thread.

#include "common/clock.h"
#include "control/pool_registry.h"

namespace scalegate::control {

// Returns true when an ejection or a return changed what the data paths must see.
bool runOutlierDetection(PoolRegistry& registry, MonoTime now);

}  // namespace scalegate::control
