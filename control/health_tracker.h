#pragma once
// The rise/fall state machine of active health checks (HAProxy semantics), applied to one
// MemberRecord per probe result. Pure over its arguments; control thread.
//
//                 `rise` ok in a row                    `fall` failures in a row
//   kUnknown ─────────────────────────► kHealthy   kUnknown ─────────────────────► kUnhealthy
//   kUnhealthy ───────────────────────► kHealthy   kHealthy ─────────────────────► kUnhealthy
//
// kUnknown (no verdict yet) acts as the configured initial state (HealthCheck::
// initially_healthy, see MemberRecord::probeHealthy): an initially healthy member takes traffic
// until `fall` failures in a row, an initially unhealthy one gets none until `rise` successes.
// Results that alternate never complete a run, so a flapping member keeps its state.
//
// Rich health "Initializing" (the app says it is still starting) is a failed probe: it breaks a
// run of successes, so it never counts toward `rise`. While the member has no verdict yet
// (kUnknown) it does not count toward `fall` either: a member that is starting up keeps its
// configured initial state instead of being marked down (and reported as a failure to the
// autoscaler's repair logic) for being slow to start. Once the member has a verdict,
// Initializing is an ordinary failure (an app that restarted is not serving).

#include "common/clock.h"
#include "config/model.h"
#include "control/pool_registry.h"

namespace scalegate::control {

enum class HealthChange { kNone, kBecameHealthy, kBecameUnhealthy };

const char* healthChangeName(HealthChange c);  // "none" | "became_healthy" | "became_unhealthy"

// Applies one probe result taken at `at` to m: consecutive_ok / consecutive_fail, probes_ok /
// probes_failed, last_probe / last_probe_at, load and app_health, health and transitioning.
// Returns the change of m.health; the first verdict of a kUnknown member is reported too
// (kUnknown -> kHealthy is kBecameHealthy even when the initial state already counted the
// member healthy; compare probeHealthy() before and after when only traffic matters).
//
// Load: an answer (http_status != 0) replaces m.load and m.app_health with what it reported
// (an answer without a report clears them); a probe without an answer keeps the last reported
// load, and a member that reports rich health becomes "Unknown" (Azure: timeout and unreachable
// are Unknown).
//
// transitioning: true while the member has no verdict yet but a run has started, or while the
// latest results disagree with its verdict (a healthy member failing, an unhealthy one
// succeeding), so the prober can use fast_interval.
//
// rise and fall of 0 act as 1.
HealthChange applyProbe(MemberRecord& m, const ProbeOutcome& o, const config::HealthCheck& hc,
                        WallTime at);

}  // namespace scalegate::control
