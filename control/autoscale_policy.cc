#include "control/autoscale_policy.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace scalegate::control {
namespace {

using config::CompareOp;
using config::MetricStatistic;
using config::ScaleAction;
using config::ScaleRule;
using config::TimeAggregation;

constexpr uint32_t kCapacityCeiling = 1000;

std::string formatNumber(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string formatDuration(Duration d) {
  auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  if (s != 0 && s % 3600 == 0) return std::to_string(s / 3600) + "h";
  if (s != 0 && s % 60 == 0) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

const char* statisticName(MetricStatistic s) {
  switch (s) {
    case MetricStatistic::kAvg:
      return "avg";
    case MetricStatistic::kMin:
      return "min";
    case MetricStatistic::kMax:
      return "max";
    case MetricStatistic::kSum:
      return "sum";
    case MetricStatistic::kCount:
      return "count";
  }
  return "?";
}

const char* aggregationName(TimeAggregation a) {
  switch (a) {
    case TimeAggregation::kAvg:
      return "avg";
    case TimeAggregation::kMin:
      return "min";
    case TimeAggregation::kMax:
      return "max";
    case TimeAggregation::kTotal:
      return "total";
    case TimeAggregation::kCount:
      return "count";
    case TimeAggregation::kLast:
      return "last";
  }
  return "?";
}

const char* opName(CompareOp op) {
  switch (op) {
    case CompareOp::kGt:
      return ">";
    case CompareOp::kGe:
      return ">=";
    case CompareOp::kLt:
      return "<";
    case CompareOp::kLe:
      return "<=";
    case CompareOp::kEq:
      return "==";
    case CompareOp::kNe:
      return "!=";
  }
  return "?";
}

std::string describeTarget(const config::TargetTracking& t) {
  return std::string("target ") + statisticName(t.statistic) + " " + t.metric + " over " +
         formatDuration(t.window) + " = " + formatNumber(t.value) + " (tolerance " +
         formatNumber(t.tolerance) + ")";
}

// The out-rule's metric if capacity went from n to n2, load unchanged (Azure: value × N / N').
// Per-member statistics spread over fewer members; a sum stays; a member count shrinks.
// Multiplies before dividing so that exact cases stay exact (63 × 30 / 27 = 70, not 70.000001).
double project(const ScaleRule& r, double value, uint32_t n, uint32_t n2) {
  double from = n, to = std::max<uint32_t>(n2, 1);
  if (r.divide_per_instance) return value * from / to;
  switch (r.statistic) {
    case MetricStatistic::kAvg:
    case MetricStatistic::kMin:
    case MetricStatistic::kMax:
      return value * from / to;
    case MetricStatistic::kSum:
      return value;
    case MetricStatistic::kCount:
      return value * to / from;
  }
  return value;
}

int64_t wallMinutes(WallTime t) {
  return std::chrono::floor<std::chrono::minutes>(t.time_since_epoch()).count();
}

}  // namespace

const char* scaleDirectionName(ScaleDirection d) {
  switch (d) {
    case ScaleDirection::kNone:
      return "none";
    case ScaleDirection::kOut:
      return "out";
    case ScaleDirection::kIn:
      return "in";
  }
  return "?";
}

const char* flappingKindName(FlappingEvent::Kind k) {
  return k == FlappingEvent::Kind::kFlapping ? "Flapping" : "FlappingOccurred";
}

const char* decisionCauseName(DecisionCause c) {
  switch (c) {
    case DecisionCause::kNone:
      return "none";
    case DecisionCause::kRule:
      return "rule";
    case DecisionCause::kTarget:
      return "target";
    case DecisionCause::kRulesAndTarget:
      return "rules_and_target";
    case DecisionCause::kBelowMin:
      return "below_min";
    case DecisionCause::kAboveMax:
      return "above_max";
    case DecisionCause::kDefaultCapacity:
      return "default_capacity";
  }
  return "?";
}

bool scheduleHolds(const config::ProfileSchedule& s, WallTime now) {
  if (s.kind == config::ProfileSchedule::Kind::kFixed) return s.start <= now && now < s.end;
  int64_t local = wallMinutes(now) + s.utc_offset_minutes;
  int64_t day = local >= 0 ? local / 1440 : (local - 1439) / 1440;  // days since 1970-01-01
  auto minute = static_cast<uint32_t>(local - day * 1440);
  // 1970-01-01 was a Thursday (weekday 4, Sunday = 0).
  auto weekday = static_cast<unsigned>(((day % 7) + 7 + 4) % 7);
  auto on = [&](unsigned wd) { return (s.days >> wd) & 1u; };
  if (s.start_minute < s.end_minute) {
    return on(weekday) && s.start_minute <= minute && minute < s.end_minute;
  }
  // Past midnight: from start on a listed day to end on the day after it.
  return (on(weekday) && minute >= s.start_minute) ||
         (on((weekday + 6) % 7) && minute < s.end_minute);
}

ActiveProfile activeProfile(const config::AutoscaleConfig& cfg, WallTime now) {
  int chosen = -1;
  for (auto kind :
       {config::ProfileSchedule::Kind::kFixed, config::ProfileSchedule::Kind::kWeekly}) {
    for (size_t i = 0; i < cfg.profiles.size() && chosen < 0; ++i) {
      const auto& p = cfg.profiles[i];
      if (p.schedule.kind == kind && scheduleHolds(p.schedule, now)) chosen = static_cast<int>(i);
    }
  }
  ActiveProfile a;
  if (chosen < 0) {
    a.min = cfg.min;
    a.max = cfg.max;
    a.default_capacity = cfg.default_capacity;
    a.rules = &cfg.rules;
    a.target = &cfg.target;
    return a;
  }
  const auto& p = cfg.profiles[static_cast<size_t>(chosen)];
  a.index = chosen;
  a.name = p.name;
  a.min = p.min;
  a.max = p.max;
  a.default_capacity = p.default_capacity;
  a.rules = &p.rules;
  a.target = &p.target;
  return a;
}

std::string describeRule(const ScaleRule& r) {
  std::string s = std::string(statisticName(r.statistic)) + " " + r.metric + " over " +
                  formatDuration(r.window) + " (" + aggregationName(r.aggregation) + ")";
  if (r.divide_per_instance) s += " per instance";
  s += std::string(" ") + opName(r.op) + " " + formatNumber(r.threshold) + ": ";
  switch (r.action.kind) {
    case ScaleAction::Kind::kIncrease:
      s += "+" + std::to_string(r.action.value);
      break;
    case ScaleAction::Kind::kDecrease:
      s += "-" + std::to_string(r.action.value);
      break;
    case ScaleAction::Kind::kIncreasePercent:
      s += "+" + std::to_string(r.action.value) + "%";
      break;
    case ScaleAction::Kind::kDecreasePercent:
      s += "-" + std::to_string(r.action.value) + "%";
      break;
    case ScaleAction::Kind::kSetCount:
      s += std::string("set ") + std::to_string(r.action.value) + " (" +
           scaleDirectionName(r.direction) + ")";
      break;
  }
  s += ", cooldown " + formatDuration(r.cooldown);
  return s;
}

uint32_t applyScaleAction(const ScaleAction& a, uint32_t current) {
  uint64_t n = current;
  uint64_t result = n;
  switch (a.kind) {
    case ScaleAction::Kind::kIncrease:
      result = n + a.value;
      break;
    case ScaleAction::Kind::kDecrease:
      result = n > a.value ? n - a.value : 0;
      break;
    case ScaleAction::Kind::kIncreasePercent:
      result = n + std::max<uint64_t>(1, (n * a.value + 99) / 100);
      break;
    case ScaleAction::Kind::kDecreasePercent: {
      uint64_t remove = std::max<uint64_t>(1, n * a.value / 100);
      result = n > remove ? n - remove : 0;
      break;
    }
    case ScaleAction::Kind::kSetCount:
      result = a.value;
      break;
  }
  return static_cast<uint32_t>(std::min<uint64_t>(result, kCapacityCeiling));
}

bool compareMetric(double value, CompareOp op, double threshold) {
  switch (op) {
    case CompareOp::kGt:
      return value > threshold;
    case CompareOp::kGe:
      return value >= threshold;
    case CompareOp::kLt:
      return value < threshold;
    case CompareOp::kLe:
      return value <= threshold;
    case CompareOp::kEq:
      return value == threshold;
    case CompareOp::kNe:
      return value != threshold;
  }
  return false;
}

bool Autoscaler::due(const config::AutoscaleConfig& cfg, MonoTime now) const {
  return !last_evaluated_ || now - *last_evaluated_ >= cfg.evaluation_interval;
}

void Autoscaler::recordScaled(ScaleDirection direction, MonoTime at) {
  if (direction == ScaleDirection::kNone) return;
  last_scaled_ = at;
  last_direction_ = direction;
}

ScaleDecision Autoscaler::evaluate(const config::AutoscaleConfig& cfg,
                                   const PoolMetricStore& metrics, uint32_t current,
                                   WallTime now_wall, MonoTime now,
                                   std::optional<uint32_t> ready_members) {
  last_evaluated_ = now;
  const ActiveProfile p = activeProfile(cfg, now_wall);
  const int64_t now_s = PoolMetricStore::unixSecond(now_wall);
  const std::vector<ScaleRule>& rules = *p.rules;

  ScaleDecision d;
  d.old_capacity = current;
  d.new_capacity = current;
  d.profile = p.name;
  d.profile_index = p.index;

  // 1. Every rule: its value over its window, whether it fires, whether it is cooling down.
  bool any_out_condition = false;
  int best_out = -1;
  bool has_in_rules = false;
  bool all_in_fire = true;
  int best_in = -1;
  for (size_t i = 0; i < rules.size(); ++i) {
    const ScaleRule& r = rules[i];
    RuleEvaluation ev;
    ev.index = i;
    ev.direction = r.direction;
    ev.value = metrics.query(r.metric, r.statistic, r.aggregation, r.window, now_s);
    if (ev.value && r.divide_per_instance) *ev.value /= std::max<uint32_t>(current, 1);
    if (!ev.value) d.metrics_missing = true;
    ev.fired = ev.value && compareMetric(*ev.value, r.op, r.threshold);
    ev.in_cooldown = last_scaled_ && now < *last_scaled_ + r.cooldown;
    ev.proposed = applyScaleAction(r.action, current);
    if (r.direction == ScaleDirection::kOut) {
      any_out_condition |= ev.fired;
      // Any out-rule that fires and is not cooling down; the largest result wins.
      if (ev.fired && !ev.in_cooldown && ev.proposed > current &&
          (best_out < 0 || ev.proposed > d.rules[static_cast<size_t>(best_out)].proposed)) {
        best_out = static_cast<int>(i);
      }
    } else if (r.direction == ScaleDirection::kIn) {
      has_in_rules = true;
      // Every in-rule must fire (and be out of cooldown); the smallest reduction wins.
      if (!ev.fired || ev.in_cooldown || ev.proposed >= current) {
        all_in_fire = false;
      } else if (best_in < 0 || ev.proposed > d.rules[static_cast<size_t>(best_in)].proposed) {
        best_in = static_cast<int>(i);
      }
    }
    d.rules.push_back(ev);
  }
  if (!all_in_fire) best_in = -1;

  // 2. Target tracking (HPA): desired = ceil(ready × metric / target) outside the tolerance.
  const config::TargetTracking* target = p.target->has_value() ? &p.target->value() : nullptr;
  std::optional<double> target_value;
  std::optional<uint32_t> target_out, target_in;
  if (target_profile_ != p.index) {  // another profile's recommendations do not apply
    recommendations_.clear();
    target_profile_ = p.index;
  }
  if (target != nullptr) {
    target_value = metrics.query(target->metric, target->statistic, TimeAggregation::kAvg,
                                 target->window, now_s);
    if (!target_value) d.metrics_missing = true;
  }
  if (target != nullptr && target_value) {
    double ratio = *target_value / target->value;
    uint32_t ready = ready_members.value_or(current);
    uint32_t desired = current;
    if (std::abs(1.0 - ratio) > target->tolerance) {
      double raw = std::ceil(ratio * static_cast<double>(ready) - 1e-9);
      desired = static_cast<uint32_t>(std::clamp(raw, 0.0, double{kCapacityCeiling}));
      if (ratio > 1 && desired <= current) desired = current;  // booting members will absorb it
      if (ratio < 1 && desired >= current) desired = current;
    }
    while (!recommendations_.empty() &&
           recommendations_.front().first + target->scale_down_stabilization < now) {
      recommendations_.pop_front();
    }
    recommendations_.emplace_back(now, desired);
    if (desired > current) {
      target_out = desired;
      d.target_desired = desired;
    } else {
      // Scale-down stabilization: the highest recommendation within the window.
      uint32_t stabilized = 0;
      for (const auto& [t, rec] : recommendations_) stabilized = std::max(stabilized, rec);
      d.target_desired = std::min(stabilized, current);
      if (stabilized < current) target_in = stabilized;
    }
  }

  auto fromRule = [&](int i) {
    const ScaleRule& r = rules[static_cast<size_t>(i)];
    d.rule_index = i;
    d.rule_text = describeRule(r);
    d.metric_value = d.rules[static_cast<size_t>(i)].value;
    d.threshold = r.threshold;
  };
  auto fromTarget = [&]() {
    d.rule_index = -1;
    d.rule_text = describeTarget(*target);
    d.metric_value = target_value;
    d.threshold = target->value;
  };

  uint32_t next = current;
  // 3. Scale out: any out-rule, or the target; the largest wins.
  uint32_t rule_out = best_out >= 0 ? d.rules[static_cast<size_t>(best_out)].proposed : 0;
  if (best_out >= 0 || target_out) {
    if (target_out && *target_out > rule_out) {
      next = *target_out;
      d.cause = DecisionCause::kTarget;
      fromTarget();
    } else {
      next = rule_out;
      d.cause = DecisionCause::kRule;
      fromRule(best_out);
    }
  } else if (!any_out_condition && !d.metrics_missing) {
    // 4. Scale in: only when no out-rule's condition holds, no metric is missing, and every
    // source that has a say agrees: all in-rules (when there are any) and the target (when
    // there is one). The smallest reduction wins.
    std::optional<uint32_t> rule_in;
    if (best_in >= 0) rule_in = d.rules[static_cast<size_t>(best_in)].proposed;
    std::optional<uint32_t> in;
    if (has_in_rules && target != nullptr) {
      if (rule_in && target_in) {
        in = std::max(*rule_in, *target_in);
        d.cause = DecisionCause::kRulesAndTarget;
        if (*rule_in >= *target_in) {
          fromRule(best_in);
        } else {
          fromTarget();
        }
      }
    } else if (has_in_rules) {
      if (rule_in) {
        in = rule_in;
        d.cause = DecisionCause::kRule;
        fromRule(best_in);
      }
    } else if (target_in) {
      in = target_in;
      d.cause = DecisionCause::kTarget;
      fromTarget();
    }
    if (in && std::max(*in, p.min) >= current) {
      in.reset();  // already at the minimum: nothing to remove
      d.cause = DecisionCause::kNone;
      d.rule_index = -1;
      d.rule_text.clear();
      d.metric_value.reset();
    }
    if (in) {
      uint32_t intended = std::max(*in, p.min);
      // 5. Flapping protection: the smallest N' in [intended, current) at which no out-rule's
      // projected metric (value × N / N') fires; none: skip the scale-in.
      std::string why;
      uint32_t chosen = current;
      for (uint32_t n2 = intended; n2 < current; ++n2) {
        bool flaps = false;
        for (const RuleEvaluation& ev : d.rules) {
          const ScaleRule& r = rules[ev.index];
          if (r.direction != ScaleDirection::kOut || !ev.value) continue;
          double projected = project(r, *ev.value, current, n2);
          if (compareMetric(projected, r.op, r.threshold)) {
            flaps = true;
            if (n2 == intended) {
              why = "at " + std::to_string(n2) + " instances rule " + std::to_string(ev.index) +
                    " (" + describeRule(r) + ") would see " + formatNumber(projected) + " (" +
                    formatNumber(*ev.value) + " x " + std::to_string(current) + " / " +
                    std::to_string(n2) + ")";
            }
            break;
          }
        }
        if (!flaps) {
          chosen = n2;
          break;
        }
      }
      if (chosen == current) {
        d.flapping.push_back(FlappingEvent{FlappingEvent::Kind::kFlapping, intended, current,
                                           "scale-in from " + std::to_string(current) + " to " +
                                               std::to_string(intended) + " skipped: " + why});
        d.cause = DecisionCause::kNone;
        d.reason = d.flapping.back().detail;
      } else {
        if (chosen != intended) {
          d.flapping.push_back(FlappingEvent{
              FlappingEvent::Kind::kFlappingOccurred, intended, chosen,
              "Intended new instance count: '" + std::to_string(intended) +
                  "'. Actual new instance count: '" + std::to_string(chosen) + "': " + why});
        }
        next = chosen;
      }
    }
  }

  // 6. Default capacity: metrics missing (or nothing to evaluate) and below default: raise.
  // Never lowers (Azure: "only used if the current instance count is lower than the default").
  bool nothing_to_evaluate = rules.empty() && target == nullptr;
  if ((d.metrics_missing || nothing_to_evaluate) && next < p.default_capacity) {
    next = p.default_capacity;
    d.cause = DecisionCause::kDefaultCapacity;
    d.rule_index = -1;
    d.rule_text.clear();
    d.metric_value.reset();
  }

  // 7. min/max: a count outside the profile's bounds is pulled back on every run.
  uint32_t clamped = std::clamp(next, p.min, p.max);
  if (clamped != next) {
    bool limited_rule =
        (next > current && clamped > current) || (next < current && clamped < current);
    if (!limited_rule) {
      d.cause = current < p.min   ? DecisionCause::kBelowMin
                : current > p.max ? DecisionCause::kAboveMax
                                  : DecisionCause::kNone;
      d.rule_index = -1;
      d.rule_text.clear();
      d.metric_value.reset();
    }
    next = clamped;
  }
  // Pulled back to a bound the pool was outside of: that is the cause, whatever else agreed.
  if ((current < p.min && next == p.min) || (current > p.max && next == p.max)) {
    d.cause = current < p.min ? DecisionCause::kBelowMin : DecisionCause::kAboveMax;
    d.rule_index = -1;
    d.rule_text.clear();
    d.metric_value.reset();
  }

  d.new_capacity = next;
  d.changed = next != current;
  d.direction = next > current   ? ScaleDirection::kOut
                : next < current ? ScaleDirection::kIn
                                 : ScaleDirection::kNone;
  if (!d.changed && d.cause != DecisionCause::kNone) d.cause = DecisionCause::kNone;

  std::string head = "profile " + p.name + ": ";
  if (d.changed) {
    std::string what;
    switch (d.cause) {
      case DecisionCause::kRule:
      case DecisionCause::kTarget:
      case DecisionCause::kRulesAndTarget:
        what =
            (d.rule_index >= 0 ? "rule " + std::to_string(d.rule_index) + " (" + d.rule_text + ")"
                               : d.rule_text) +
            (d.metric_value ? ", value " + formatNumber(*d.metric_value) : std::string());
        if (d.cause == DecisionCause::kRulesAndTarget) what = "rules and target agree; " + what;
        break;
      case DecisionCause::kBelowMin:
        what = "capacity below the minimum " + std::to_string(p.min);
        break;
      case DecisionCause::kAboveMax:
        what = "capacity above the maximum " + std::to_string(p.max);
        break;
      case DecisionCause::kDefaultCapacity:
        what = "metrics missing; default capacity " + std::to_string(p.default_capacity);
        break;
      case DecisionCause::kNone:
        break;
    }
    d.reason =
        head + what + "; capacity " + std::to_string(current) + " -> " + std::to_string(next);
    if (!d.flapping.empty()) d.reason += " (" + d.flapping.back().detail + ")";
  } else if (d.reason.empty()) {
    d.reason = head + "no change at " + std::to_string(current) +
               (d.metrics_missing ? " (metrics missing)" : "");
  } else {
    d.reason = head + d.reason;
  }
  return d;
}

ManualScale clampManualScale(const config::AutoscaleConfig& cfg, uint32_t requested, WallTime now) {
  ManualScale m;
  if (cfg.enabled) {
    ActiveProfile p = activeProfile(cfg, now);
    m.min = p.min;
    m.max = p.max;
    m.profile = p.name;
  } else {
    m.min = 0;
    m.max = kCapacityCeiling;
  }
  m.capacity = std::clamp(requested, m.min, m.max);
  m.clamped = m.capacity != requested;
  if (m.clamped) {
    m.reason = std::to_string(requested) + " is " +
               (requested < m.min ? "below the minimum " + std::to_string(m.min)
                                  : "above the maximum " + std::to_string(m.max)) +
               (m.profile.empty() ? std::string() : " of profile " + m.profile) + "; using " +
               std::to_string(m.capacity);
  }
  return m;
}

}  // namespace scalegate::control
