#include "bench/sgload/report.h"

namespace scalegate::bench {
namespace {

double us(uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

// "850 us", "12.3 ms", "1.20 s": for people (the progress line), not for parsers.
std::string human(uint64_t ns) {
  char buf[32];
  if (ns < 10'000'000) {
    std::snprintf(buf, sizeof buf, "%.0f us", us(ns));
  } else if (ns < 10'000'000'000) {
    std::snprintf(buf, sizeof buf, "%.1f ms", static_cast<double>(ns) / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", static_cast<double>(ns) / 1e9);
  }
  return buf;
}

}  // namespace

double targetRate(const Options& o) {
  if (!o.openLoop()) return 0;
  if (o.rate) return *o.rate;
  double requests = 0, seconds = 0;
  for (const Stage& s : o.stages) {
    requests += s.rate * static_cast<double>(s.duration_ns) / 1e9;
    seconds += static_cast<double>(s.duration_ns) / 1e9;
  }
  return seconds > 0 ? requests / seconds : 0;
}

void writeCsvHeader(std::FILE* out) {
  std::fprintf(out, "second,requests,errors,rps,p50_us,p99_us,max_us\n");
  std::fflush(out);
}

void writeCsvRow(std::FILE* out, const IntervalStats& iv, double length_s) {
  std::fprintf(
      out, "%llu,%llu,%llu,%.1f,%.1f,%.1f,%.1f\n", static_cast<unsigned long long>(iv.second + 1),
      static_cast<unsigned long long>(iv.requests), static_cast<unsigned long long>(iv.errors),
      static_cast<double>(iv.requests) / length_s, us(iv.latency.percentile(50)),
      us(iv.latency.percentile(99)), us(iv.latency.max()));
  std::fflush(out);
}

void printProgress(const IntervalStats& iv, double length_s, uint64_t total_requests,
                   double target_rate) {
  char target[48] = "";
  if (target_rate > 0) std::snprintf(target, sizeof target, " (target %.0f)", target_rate);
  std::fprintf(stderr, "[%4llus] %9.0f req/s%s  p50 %s  p99 %s  max %s  errors %llu  total %llu\n",
               static_cast<unsigned long long>(iv.second + 1),
               static_cast<double>(iv.requests) / length_s, target,
               human(iv.latency.percentile(50)).c_str(), human(iv.latency.percentile(99)).c_str(),
               human(iv.latency.max()).c_str(), static_cast<unsigned long long>(iv.errors),
               static_cast<unsigned long long>(total_requests));
}

void printTextSummary(const Options& o, const RunStats& s, double duration_s) {
  const LatencyHistogram& h = s.latency;
  std::printf("sgload %s://%s%s: %d connections, %d threads, %s, %d %s per connection\n",
              o.tls ? "https" : "http", o.authority.c_str(), o.paths.front().c_str(), o.connections,
              o.threads, o.h2 ? "HTTP/2" : "HTTP/1.1", o.streams,
              o.h2 ? "streams" : "pipelined requests");
  if (o.openLoop()) {
    std::printf("open loop: target %.1f req/s, latency from the intended send time\n",
                targetRate(o));
  } else {
    std::printf("closed loop: latency from the actual send time\n");
  }
  std::printf("latency mean %.1f us min %.1f us\n", h.mean() / 1000.0, us(h.min()));
  std::printf("read: %.2f MB (%.2f MB/s)\n", static_cast<double>(s.bytes_read) / 1e6,
              duration_s > 0 ? static_cast<double>(s.bytes_read) / 1e6 / duration_s : 0.0);
  std::printf("requests: %llu\n", static_cast<unsigned long long>(s.requests));
  std::printf("duration: %.3f s\n", duration_s);
  std::printf("rps: %.1f\n", duration_s > 0 ? static_cast<double>(s.requests) / duration_s : 0.0);
  std::printf(
      "latency p50 %.1f us p90 %.1f us p99 %.1f us p99.9 %.1f us p99.99 %.1f us max %.1f us\n",
      us(h.percentile(50)), us(h.percentile(90)), us(h.percentile(99)), us(h.percentile(99.9)),
      us(h.percentile(99.99)), us(h.max()));
  for (size_t code = 0; code < s.status.size(); ++code)
    if (s.status[code] != 0)
      std::printf("status %zu: %llu\n", code, static_cast<unsigned long long>(s.status[code]));
  std::printf(
      "errors connect %llu timeout %llu reset %llu protocol %llu\n",
      static_cast<unsigned long long>(s.errors[0]), static_cast<unsigned long long>(s.errors[1]),
      static_cast<unsigned long long>(s.errors[2]), static_cast<unsigned long long>(s.errors[3]));
  std::fflush(stdout);
}

void printJsonSummary(const Options& o, const RunStats& s, double duration_s) {
  const LatencyHistogram& h = s.latency;
  std::printf("{\"requests\":%llu,\"duration_s\":%.6f,\"rps\":%.3f,",
              static_cast<unsigned long long>(s.requests), duration_s,
              duration_s > 0 ? static_cast<double>(s.requests) / duration_s : 0.0);
  if (o.openLoop()) {
    std::printf("\"target_rate\":%.3f,", targetRate(o));
  } else {
    std::printf("\"target_rate\":null,");
  }
  std::printf(
      "\"latency_us\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p99_9\":%.3f,\"p99_99\":%.3f,"
      "\"max\":%.3f,\"mean\":%.3f,\"min\":%.3f},",
      us(h.percentile(50)), us(h.percentile(90)), us(h.percentile(99)), us(h.percentile(99.9)),
      us(h.percentile(99.99)), us(h.max()), h.mean() / 1000.0, us(h.min()));
  std::printf("\"status\":{");
  bool first = true;
  for (size_t code = 0; code < s.status.size(); ++code) {
    if (s.status[code] == 0) continue;
    std::printf("%s\"%zu\":%llu", first ? "" : ",", code,
                static_cast<unsigned long long>(s.status[code]));
    first = false;
  }
  std::printf(
      "},\"errors\":{\"connect\":%llu,\"timeout\":%llu,\"reset\":%llu,\"protocol\":%llu},",
      static_cast<unsigned long long>(s.errors[0]), static_cast<unsigned long long>(s.errors[1]),
      static_cast<unsigned long long>(s.errors[2]), static_cast<unsigned long long>(s.errors[3]));
  std::printf(
      "\"bytes_read\":%llu,\"connections\":%d,\"threads\":%d,\"streams\":%d,"
      "\"protocol\":\"%s\"}\n",
      static_cast<unsigned long long>(s.bytes_read), o.connections, o.threads, o.streams,
      o.h2 ? "h2" : "http/1.1");
  std::fflush(stdout);
}

}  // namespace scalegate::bench
