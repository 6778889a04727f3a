#pragma once
// The autoscale decision: Azure Monitor autoscale rules (profiles, any-out / all-in, cooldown,
// flapping protection, default capacity) plus Kubernetes HPA-style target tracking. Pure logic:
// no I/O, time comes in as arguments. control/README.md "Autoscale" states the exact semantics.
//
//   metrics (PoolMetricStore) ─┐
//   AutoscaleConfig ───────────┼─► Autoscaler::evaluate ─► ScaleDecision ─► caller (app.cc):
//   current capacity, times ───┘        ▲                                   webhook, events
//                                       └──── recordScaled(direction, t) ◄─ what was applied
//
// Thread: control thread. One Autoscaler per pool; it owns only cooldown and stabilization
// state, never the config or the metrics (borrowed for the duration of a call).

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "config/model.h"
#include "control/metric_series.h"

namespace scalegate::control {

using config::ScaleDirection;

const char* scaleDirectionName(ScaleDirection d);  // "none" | "out" | "in"

// The profile in force at a time: the first fixed-date profile whose window holds `now`, else
// the first weekly profile that holds it, else the top-level (default) profile.
struct ActiveProfile {
  int index = -1;  // into AutoscaleConfig::profiles; -1 = the default profile
  std::string name = "default";
  uint32_t min = 1, max = 1, default_capacity = 1;
  const std::vector<config::ScaleRule>* rules = nullptr;          // never null
  const std::optional<config::TargetTracking>* target = nullptr;  // never null
};
ActiveProfile activeProfile(const config::AutoscaleConfig& cfg, WallTime now);
bool scheduleHolds(const config::ProfileSchedule& s, WallTime now);

// "avg cpu over 5m (avg) > 75: +2, cooldown 5m": for events, logs and the API.
std::string describeRule(const config::ScaleRule& rule);

// The capacity one rule's action asks for from `current`, before min/max clamping.
// increase_percent adds ceil(current × p / 100), at least 1 (Azure); decrease_percent removes
// floor(current × p / 100), at least 1 (rounds toward keeping capacity, as AWS does, but never
// a no-op); set gives the value; never below 0 or above 1000.
uint32_t applyScaleAction(const config::ScaleAction& action, uint32_t current);

// True when `value op threshold`.
bool compareMetric(double value, config::CompareOp op, double threshold);

// One rule of the active profile, as evaluated.
struct RuleEvaluation {
  size_t index = 0;
  ScaleDirection direction = ScaleDirection::kNone;
  std::optional<double> value;  // after divide_per_instance; nullopt: no data in the window
  bool fired = false;           // the condition holds
  bool in_cooldown = false;     // fired or not, its cooldown since the last scale has not passed
  uint32_t proposed = 0;        // applyScaleAction(current)
};

// Azure's activity-log events for a scale-in that flapping protection changed.
struct FlappingEvent {
  enum class Kind {
    kFlapping,          // the scale-in was skipped (Azure "Flapping")
    kFlappingOccurred,  // scaled in by less than intended (Azure "FlappingOccurred")
  };
  Kind kind = Kind::kFlapping;
  uint32_t intended = 0;  // the capacity the in-rules / target asked for
  uint32_t actual = 0;    // what the decision keeps (current capacity when skipped)
  std::string detail;     // which out-rule the projection would fire, with numbers
};
const char* flappingKindName(FlappingEvent::Kind k);  // "Flapping" | "FlappingOccurred"

enum class DecisionCause {
  kNone,             // no change
  kRule,             // threshold rule(s)
  kTarget,           // target tracking
  kRulesAndTarget,   // scale-in both agreed on (capacity is the larger of the two)
  kBelowMin,         // current capacity was below the profile's min
  kAboveMax,         // current capacity was above the profile's max
  kDefaultCapacity,  // metrics missing and current below default
};
const char* decisionCauseName(DecisionCause c);

struct ScaleDecision {
  bool changed = false;  // new_capacity != old_capacity
  uint32_t old_capacity = 0;
  uint32_t new_capacity = 0;
  ScaleDirection direction = ScaleDirection::kNone;
  DecisionCause cause = DecisionCause::kNone;
  std::string profile = "default";
  int profile_index = -1;
  int rule_index = -1;    // the rule that decided; -1 when none (target, clamp, default)
  std::string rule_text;  // describeRule() of it, or the target's description
  std::optional<double> metric_value;  // of that rule / the target
  double threshold = 0;                // of that rule, or the target value
  std::string reason;                  // one line for events and logs
  bool metrics_missing = false;        // some rule or the target had no data in its window
  std::vector<FlappingEvent> flapping;
  std::vector<RuleEvaluation> rules;       // every rule of the active profile
  std::optional<uint32_t> target_desired;  // the target's (stabilized) recommendation
};

class Autoscaler {
 public:
  // Decides the capacity for now. `ready_members` (members healthy and past warm-up) is the
  // multiplier of target tracking (HPA uses ready pods), so instances still booting do not make
  // every evaluation scale out again; nullopt = current_capacity. Does not assume the decision
  // is carried out: call recordScaled() with what was applied.
  ScaleDecision evaluate(const config::AutoscaleConfig& cfg, const PoolMetricStore& metrics,
                         uint32_t current_capacity, WallTime now_wall, MonoTime now,
                         std::optional<uint32_t> ready_members = std::nullopt);

  // A scale action (autoscale, manual or clamp) was applied at `at`: every rule waits for its
  // own cooldown from here before it may act again, in either direction (Azure: "the amount of
  // time to wait since the last scaling action before this action occurs").
  void recordScaled(ScaleDirection direction, MonoTime at);

  // True when evaluation_interval has passed since the last evaluate() (or none ran yet).
  bool due(const config::AutoscaleConfig& cfg, MonoTime now) const;

  std::optional<MonoTime> lastScaledAt() const { return last_scaled_; }
  ScaleDirection lastDirection() const { return last_direction_; }

 private:
  std::optional<MonoTime> last_scaled_;
  ScaleDirection last_direction_ = ScaleDirection::kNone;
  std::optional<MonoTime> last_evaluated_;
  int target_profile_ = -2;  // profile the stabilization history belongs to
  std::deque<std::pair<MonoTime, uint32_t>> recommendations_;  // target, for stabilization
};

// `sgctl scale POOL N`: the requested count bounded by the active profile's min and max.
struct ManualScale {
  uint32_t capacity = 0;
  bool clamped = false;
  uint32_t min = 0, max = 0;
  std::string profile;
  std::string reason;  // "" when not clamped, else why ("2 is below the minimum 3 of ...")
};
ManualScale clampManualScale(const config::AutoscaleConfig& cfg, uint32_t requested, WallTime now);

}  // namespace scalegate::control
