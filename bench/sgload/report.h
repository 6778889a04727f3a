#pragma once
// sgload's outputs: the text or JSON summary on stdout, the live progress line on stderr and
// the per-second --csv series. Main thread only.

#include <cstdio>
#include <string>

#include "bench/sgload/options.h"
#include "bench/sgload/stats.h"

namespace scalegate::bench {

// The mean target rate of an open-loop run (stages weighted by duration); 0 for closed loop.
double targetRate(const Options& options);

// One line per second. CSV rows: second (1-based: the row covers (second-1, second]),
// requests, errors, rps, p50_us, p99_us, max_us. length_s: how much of the second was run.
void writeCsvHeader(std::FILE* out);
void writeCsvRow(std::FILE* out, const IntervalStats& interval, double length_s);
void printProgress(const IntervalStats& interval, double length_s, uint64_t total_requests,
                   double target_rate);

void printTextSummary(const Options& options, const RunStats& stats, double duration_s);
void printJsonSummary(const Options& options, const RunStats& stats, double duration_s);

}  // namespace scalegate::bench
