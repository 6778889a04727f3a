#include "config/loader.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <unordered_map>

#include "common/units.h"

// The loader walks the YAML tree by hand instead of using yaml-cpp's as<T>() so that every
// value gets a precise "file:line: key: what is wrong" message, unknown keys are caught at every
// level, and all problems in a file are reported in one pass. yaml-cpp throws; every call into
// it happens below loadConfigText's try block, so no exception leaves this file.

namespace scalegate::config {
namespace {

// More errors than this are noise: the file is probably not a scalegate config at all.
constexpr size_t kMaxErrors = 200;

constexpr uint32_t kMaxWorkers = 256;
constexpr uint64_t kMinHeaderBytes = 1024;
constexpr uint64_t kMaxHeaderBytes = 1024 * 1024;
constexpr uint64_t kMinUriBytes = 256;
constexpr uint32_t kMaxHeaders = 256;
constexpr uint32_t kMaxConnectionLimit = 10000000;
constexpr uint32_t kMaxRequestRate = 1000000;
constexpr uint32_t kMinMaglevTableSize = 251;
constexpr uint32_t kMaxMaglevTableSize = 1000003;
constexpr uint32_t kMaxIdlePerMember = 100000;
constexpr uint32_t kMaxRetries = 5;
constexpr uint32_t kMaxH2Streams = 10000;
constexpr uint32_t kMaxH2Connections = 1000;
constexpr uint32_t kMaxRiseFall = 100;
constexpr uint32_t kMaxFaultDomain = 255;
constexpr uint32_t kMaxWeight = 1000000;
constexpr uint32_t kMaxCapacity = 1000;
constexpr uint32_t kMaxProfiles = 20;         // Azure: 1..20 profiles per setting
constexpr uint32_t kMaxRulesPerProfile = 10;  // Azure: up to 10 rules per profile
constexpr uint32_t kMaxScalerAttempts = 100;
constexpr uint32_t kMaxRepairFailures = 100;
constexpr uint32_t kMaxZones = 16;
constexpr uint64_t kMinAdminBodyBytes = 1024;
constexpr uint64_t kMaxAdminBodyBytes = 16 * 1024 * 1024;
constexpr uint32_t kMaxOutlierFailures = 1000;
constexpr char kDefaultAdminListen[] = "127.0.0.1:9900";
constexpr uint32_t kMaxDataplanePorts = 8;  // dataplane/stats.h kMaxPorts
constexpr uint32_t kMaxDataplaneLcores = 16;
constexpr uint32_t kMaxLcoreId = 1023;
constexpr uint64_t kMinFlowTableSize = 64;
constexpr uint64_t kMaxFlowTableSize = uint64_t{1} << 28;
constexpr uint32_t kMaxL4Listeners = 255;  // dataplane VIP ids are one byte

bool parseMac(std::string_view s, uint8_t out[6]) {
  if (s.size() != 17) return false;
  for (int i = 0; i < 6; ++i) {
    if (i > 0 && s[i * 3 - 1] != ':') return false;
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(s.data() + i * 3, s.data() + i * 3 + 2, v, 16);
    if (ec != std::errc() || ptr != s.data() + i * 3 + 2) return false;
    out[i] = static_cast<uint8_t>(v);
  }
  return true;
}

template <typename E>
struct EnumName {
  std::string_view name;
  E value;
};

constexpr EnumName<LogLevel> kLogLevels[] = {{"debug", LogLevel::kDebug},
                                             {"info", LogLevel::kInfo},
                                             {"warn", LogLevel::kWarn},
                                             {"error", LogLevel::kError}};
constexpr EnumName<LogFormat> kLogFormats[] = {{"text", LogFormat::kText},
                                               {"json", LogFormat::kJson}};
constexpr EnumName<ListenerProtocol> kProtocols[] = {{"http", ListenerProtocol::kHttp},
                                                     {"tcp", ListenerProtocol::kTcp},
                                                     {"l4", ListenerProtocol::kL4}};
constexpr EnumName<L4Mode> kL4Modes[] = {{"nat", L4Mode::kNat}, {"dsr", L4Mode::kDsr}};
constexpr EnumName<PoolMode> kPoolModes[] = {{"uniform", PoolMode::kUniform},
                                             {"flexible", PoolMode::kFlexible}};
constexpr EnumName<BalanceAlgorithm> kBalances[] = {
    {"round_robin", BalanceAlgorithm::kRoundRobin},
    {"least_request", BalanceAlgorithm::kLeastRequest},
    {"random", BalanceAlgorithm::kRandom},
    {"maglev", BalanceAlgorithm::kMaglev},
    {"ring_hash", BalanceAlgorithm::kRingHash}};
constexpr EnumName<HashSource> kHashSources[] = {{"client_ip", HashSource::kClientIp},
                                                 {"header", HashSource::kHeader},
                                                 {"cookie", HashSource::kCookie}};
constexpr EnumName<HealthCheckType> kHealthTypes[] = {{"tcp", HealthCheckType::kTcp},
                                                      {"http", HealthCheckType::kHttp},
                                                      {"https", HealthCheckType::kHttps}};
constexpr EnumName<UpstreamProtocol> kUpstreamProtocols[] = {{"http1", UpstreamProtocol::kHttp1},
                                                             {"h2", UpstreamProtocol::kH2}};
constexpr EnumName<bool> kInitialStates[] = {{"healthy", true}, {"unhealthy", false}};
constexpr EnumName<MetricStatistic> kStatistics[] = {{"avg", MetricStatistic::kAvg},
                                                     {"min", MetricStatistic::kMin},
                                                     {"max", MetricStatistic::kMax},
                                                     {"sum", MetricStatistic::kSum},
                                                     {"count", MetricStatistic::kCount}};
constexpr EnumName<TimeAggregation> kAggregations[] = {
    {"avg", TimeAggregation::kAvg},     {"min", TimeAggregation::kMin},
    {"max", TimeAggregation::kMax},     {"total", TimeAggregation::kTotal},
    {"count", TimeAggregation::kCount}, {"last", TimeAggregation::kLast}};
constexpr EnumName<CompareOp> kCompareOps[] = {{">", CompareOp::kGt},  {">=", CompareOp::kGe},
                                               {"<", CompareOp::kLt},  {"<=", CompareOp::kLe},
                                               {"==", CompareOp::kEq}, {"!=", CompareOp::kNe}};
constexpr EnumName<ScaleDirection> kDirections[] = {{"out", ScaleDirection::kOut},
                                                    {"in", ScaleDirection::kIn}};
constexpr EnumName<ScalerFormat> kScalerFormats[] = {{"scalegate", ScalerFormat::kScalegate},
                                                     {"azure", ScalerFormat::kAzure}};
constexpr std::string_view kWeekdays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
constexpr std::string_view kWeekdaysLong[] = {"sunday",   "monday", "tuesday", "wednesday",
                                              "thursday", "friday", "saturday"};
constexpr EnumName<RepairAction> kRepairActions[] = {{"replace", RepairAction::kReplace},
                                                     {"restart", RepairAction::kRestart},
                                                     {"reimage", RepairAction::kReimage}};
constexpr EnumName<ScaleInPolicy> kScaleInPolicies[] = {{"default", ScaleInPolicy::kDefault},
                                                        {"newest", ScaleInPolicy::kNewest},
                                                        {"oldest", ScaleInPolicy::kOldest}};
constexpr EnumName<LowHealthAction> kLowHealthActions[] = {
    {"spread_all", LowHealthAction::kSpreadAll}, {"refuse", LowHealthAction::kRefuse}};
constexpr EnumName<ProxyProtocol> kProxyProtocols[] = {{"none", ProxyProtocol::kNone},
                                                      {"v2", ProxyProtocol::kV2}};
constexpr EnumName<IpProto> kIpProtos[] = {{"tcp", IpProto::kTcp}, {"udp", IpProto::kUdp}};

constexpr EnumName<ScaleAction::Kind> kScaleActions[] = {
    {"increase", ScaleAction::Kind::kIncrease},
    {"decrease", ScaleAction::Kind::kDecrease},
    {"increase_percent", ScaleAction::Kind::kIncreasePercent},
    {"decrease_percent", ScaleAction::Kind::kDecreasePercent},
    {"set", ScaleAction::Kind::kSetCount}};

// A value quoted for an error message; control bytes are escaped so a message stays one line.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  out += '"';
  return out;
}

std::string toLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool isNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

bool isValidName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), isNameChar);
}

// RFC 9110 token: what a header or cookie name may be made of.
bool isTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool isValidToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), isTokenChar);
}

bool hasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7F;
  });
}

bool hasSpaceOrControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c <= 0x20 || c == 0x7F;
  });
}

// "example.com", "*.example.com", "10.0.0.1": what a route may match the Host header against.
bool isValidRouteHost(std::string_view s) {
  if (s.substr(0, 2) == "*.") s.remove_prefix(2);
  if (s.empty() || s.front() == '.' || s.back() == '.' || s.find("..") != std::string_view::npos) {
    return false;
  }
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
  });
}

bool isPrime(uint32_t n) {
  if (n < 2) return false;
  for (uint32_t d = 2; static_cast<uint64_t>(d) * d <= n; ++d) {
    if (n % d == 0) return false;
  }
  return true;
}

bool isWildcard(const SocketAddress& a) {
  std::string ip = a.ipString();
  return ip == "0.0.0.0" || ip == "::";
}

std::string formatSize(uint64_t bytes) {
  if (bytes != 0 && bytes % (1024 * 1024) == 0) return std::to_string(bytes >> 20) + "M";
  if (bytes != 0 && bytes % 1024 == 0) return std::to_string(bytes >> 10) + "k";
  return std::to_string(bytes);
}

template <typename E, size_t N>
std::string enumChoices(const EnumName<E> (&table)[N]) {
  std::string out;
  for (size_t i = 0; i < N; ++i) {
    if (i != 0) out += ", ";
    out += table[i].name;
  }
  return out;
}

template <typename E, size_t N>
std::string_view enumName(const EnumName<E> (&table)[N], E value) {
  for (const auto& e : table) {
    if (e.value == value) return e.name;
  }
  return "?";
}

int lineOf(const YAML::Node& n) {
  YAML::Mark m = n.Mark();
  return m.line >= 0 ? m.line + 1 : 0;
}

const char* kindOf(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      return "a single value";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Undefined:
      break;
  }
  return "an undefined node";
}

// One value in the tree and where it sits: its dotted path and its line.
struct Entry {
  YAML::Node value;
  std::string path;  // "pools.web.health.interval", "listeners[0].routes[1]"
  std::string key;   // last component of the path (map key); "" for list items
  int line = 0;      // of the value; the key's line when the value has no position
  int key_line = 0;  // of the key (or the list item): where "missing x" errors point
};

// The known keys of one map, in file order.
struct Fields {
  bool ok = false;  // false when the value was not a map (already reported)
  std::vector<Entry> entries;
  const Entry* get(std::string_view key) const {
    for (const auto& e : entries) {
      if (e.key == key) return &e;
    }
    return nullptr;
  }
  bool has(std::string_view key) const { return get(key) != nullptr; }
};

std::string childPath(const std::string& parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return parent + "." + std::string(key);
}

// A pool name referenced from a listener, resolved once all pools are known.
struct PoolRef {
  std::string pool;
  std::string path;
  int line;
};

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  void load(const YAML::Node& root, Config* config);
  void error(int line, const std::string& key, std::string message);
  std::vector<ConfigError> takeErrors();

 private:
  // Structure.
  Fields fieldsOf(const Entry& e, std::initializer_list<std::string_view> allowed,
                  bool any_key = false);
  std::vector<Entry> itemsOf(const Entry& e, std::string_view what);
  void missing(const Entry& parent, std::string_view key, std::string_view why = {});
  void notUsed(const Fields& f, std::string_view key, const std::string& why);

  // Scalars.
  bool readScalar(const Entry& e, std::string_view what, std::string* out);
  bool readString(const Entry& e, std::string* out) { return readScalar(e, "a string", out); }
  bool readName(const Entry& e, std::string* out);
  bool readInt(const Entry& e, int64_t lo, int64_t hi, int64_t* out);
  bool readUint32(const Entry& e, uint32_t lo, uint32_t hi, uint32_t* out);
  bool readDouble(const Entry& e, double* out);
  bool readBool(const Entry& e, bool* out);
  bool readDuration(const Entry& e, bool allow_zero, Duration* out);
  bool readSize(const Entry& e, uint64_t lo, uint64_t hi, uint64_t* out);
  bool readAddress(const Entry& e, SocketAddress* out);
  template <typename E, size_t N>
  bool readEnum(const Entry& e, const EnumName<E> (&table)[N], E* out);

  // Sections.
  void loadAdmin(const Entry& e, AdminConfig* out);
  void loadLog(const Entry& e, LogConfig* out);
  void loadListener(const Entry& e, Listener* out);
  void loadRoute(const Entry& e, Route* out);
  void loadLimits(const Entry& e, bool http, HttpLimits* out, ClientLimits* client);
  void loadAccess(const Entry& e, AccessList* out);
  void loadCidrList(const Entry& e, CidrSet* out);
  void loadTimeouts(const Entry& e, HttpTimeouts* out);
  void loadTcpTimeouts(const Entry& e, TcpSettings* out);
  void loadTls(const Entry& e, ListenerTls* out);
  void loadHttp2(const Entry& e, Http2Settings* out);
  void loadVip(const Entry& e, Listener* out);
  void loadPool(const Entry& e, Pool* out);
  void loadHash(const Entry& e, HashKey* out);
  void loadUpstream(const Entry& e, UpstreamSettings* out);
  void loadHealth(const Entry& e, HealthCheck* out);
  void loadOutlier(const Entry& e, OutlierDetection* out);
  void loadLowHealth(const Entry& e, LowHealthPolicy* out);
  void loadExpect(const Entry& e, std::vector<StatusRange>* out);
  void loadMember(const Entry& e, Member* out);
  void loadAutoscale(const Entry& e, const Pool& pool, AutoscaleConfig* out);
  bool loadCapacity(const Entry& e, uint32_t* min, uint32_t* max, uint32_t* def);
  void loadRules(const Entry& e, uint32_t min, uint32_t max, std::vector<ScaleRule>* out);
  void loadScaleRule(const Entry& e, uint32_t min, uint32_t max, ScaleRule* out);
  void loadScaleAction(const Entry& e, uint32_t min, uint32_t max, ScaleAction* out);
  void loadTarget(const Entry& e, std::optional<TargetTracking>* out);
  void loadProfile(const Entry& e, AutoscaleProfile* out);
  void loadSchedule(const Entry& e, ProfileSchedule* out);
  void loadScaler(const Entry& e, ScalerEndpoint* out);
  void loadRepair(const Entry& e, RepairPolicy* out);
  void loadUpgrade(const Entry& e, UpgradeDefaults* out);
  bool readCountOrPercent(const Entry& e, CountOrPercent* out);
  bool readClock(const Entry& e, uint32_t max_minute, uint32_t* out);
  bool readUtcOffset(const Entry& e, int32_t* out_minutes);
  bool readTimestamp(const Entry& e, WallTime* out);
  void checkUniformMembers(const Entry& members, const Pool& pool);
  void loadDataplane(const Entry& e, DataplaneConfig* out);
  void loadDataplanePort(const Entry& e, DataplanePort* out);
  void checkListeners(const Config& config);

  void error(const Entry& e, std::string message) { error(e.line, e.path, std::move(message)); }
  SourceLocation where(const Entry& e) const { return SourceLocation{file_, e.key_line}; }

  std::string file_;
  std::vector<ConfigError> errors_;
  bool truncated_ = false;
  std::vector<PoolRef> pool_refs_;
  // Lines of pools' proxy_protocol keys, by pool: only tcp listeners may use those pools.
  std::unordered_map<std::string, int> proxy_protocol_lines_;
  // Lines of listen/vip keys, parallel to Config::listeners, for duplicate-address errors.
  std::vector<int> listen_lines_;
};

void Loader::error(int line, const std::string& key, std::string message) {
  if (errors_.size() >= kMaxErrors) {
    truncated_ = true;
    return;
  }
  errors_.push_back(ConfigError{file_, line, key, std::move(message)});
}

std::vector<ConfigError> Loader::takeErrors() {
  std::stable_sort(errors_.begin(), errors_.end(),
                   [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; });
  if (truncated_) {
    errors_.push_back(
        ConfigError{file_, 0, "", "too many errors; stopped after " + std::to_string(kMaxErrors)});
  }
  return std::move(errors_);
}

Fields Loader::fieldsOf(const Entry& e, std::initializer_list<std::string_view> allowed,
                        bool any_key) {
  Fields f;
  if (e.value.IsNull()) {  // "health:" with nothing under it: all defaults
    f.ok = true;
    return f;
  }
  if (!e.value.IsMap()) {
    error(e, std::string("expected a map, got ") + kindOf(e.value));
    return f;
  }
  f.ok = true;
  std::unordered_map<std::string, int> seen;
  for (auto it = e.value.begin(); it != e.value.end(); ++it) {
    const YAML::Node key_node = it->first;
    const YAML::Node value = it->second;
    int key_line = lineOf(key_node);
    if (key_line == 0) key_line = e.line;
    if (!key_node.IsScalar()) {
      error(key_line, e.path, std::string("keys must be plain names, got ") + kindOf(key_node));
      continue;
    }
    const std::string key = key_node.Scalar();
    // Entries copy-construct their Node: assigning to a yaml-cpp Node would rewrite the tree.
    Entry child{value, childPath(e.path, key), key, lineOf(value), key_line};
    if (child.line == 0) child.line = key_line;
    auto [prev, inserted] = seen.emplace(key, key_line);
    if (!inserted) {
      error(
          key_line, child.path,
          "duplicate key " + quoted(key) + " (first at line " + std::to_string(prev->second) + ")");
      continue;
    }
    if (!any_key && std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string list;
      for (std::string_view a : allowed) {
        if (!list.empty()) list += ", ";
        list += a;
      }
      error(key_line, child.path, "unknown key " + quoted(key) + " (allowed: " + list + ")");
      continue;
    }
    f.entries.push_back(std::move(child));
  }
  return f;
}

std::vector<Entry> Loader::itemsOf(const Entry& e, std::string_view what) {
  std::vector<Entry> items;
  if (e.value.IsNull()) return items;
  if (!e.value.IsSequence()) {
    error(e, "expected a list of " + std::string(what) + ", got " + kindOf(e.value));
    return items;
  }
  size_t i = 0;
  for (auto it = e.value.begin(); it != e.value.end(); ++it, ++i) {
    const YAML::Node node = *it;
    Entry item{node, e.path + "[" + std::to_string(i) + "]", "", lineOf(node), 0};
    if (item.line == 0) item.line = e.line;
    item.key_line = item.line;
    items.push_back(std::move(item));
  }
  return items;
}

void Loader::missing(const Entry& parent, std::string_view key, std::string_view why) {
  std::string message = "missing required key " + quoted(key);
  if (!why.empty()) {
    message += " (";
    message += why;
    message += ")";
  }
  error(parent.key_line, childPath(parent.path, key), std::move(message));
}

void Loader::notUsed(const Fields& f, std::string_view key, const std::string& why) {
  if (const Entry* e = f.get(key)) error(e->key_line, e->path, "not used " + why);
}

bool Loader::readScalar(const Entry& e, std::string_view what, std::string* out) {
  if (e.value.IsScalar()) {
    *out = e.value.Scalar();
    return true;
  }
  if (e.value.IsNull()) {
    error(e, "missing value (expected " + std::string(what) + ")");
  } else {
    error(e, "expected " + std::string(what) + ", got " + kindOf(e.value));
  }
  return false;
}

bool Loader::readName(const Entry& e, std::string* out) {
  std::string s;
  if (!readScalar(e, "a name", &s)) return false;
  if (!isValidName(s)) {
    error(e, "bad name " + quoted(s) + ": use letters, digits, '_', '.' and '-'");
    return false;
  }
  *out = std::move(s);
  return true;
}

bool Loader::readInt(const Entry& e, int64_t lo, int64_t hi, int64_t* out) {
  std::string s;
  std::string range = std::to_string(lo) + ".." + std::to_string(hi);
  if (!readScalar(e, "a whole number in " + range, &s)) return false;
  int64_t v = 0;
  const char* first = s.data();
  const char* last = s.data() + s.size();
  if (first != last && *first == '+') ++first;
  auto [ptr, ec] = std::from_chars(first, last, v);
  if (ec == std::errc::result_out_of_range) {
    error(e, s + " is out of range (" + range + ")");
    return false;
  }
  if (ec != std::errc() || ptr != last || first == last) {
    error(e, "expected a whole number in " + range + ", got " + quoted(s));
    return false;
  }
  if (v < lo || v > hi) {
    error(e, s + " is out of range (" + range + ")");
    return false;
  }
  *out = v;
  return true;
}

bool Loader::readUint32(const Entry& e, uint32_t lo, uint32_t hi, uint32_t* out) {
  int64_t v = 0;
  if (!readInt(e, lo, hi, &v)) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

bool Loader::readDouble(const Entry& e, double* out) {
  std::string s;
  if (!readScalar(e, "a number", &s)) return false;
  double v = 0;
  const char* first = s.data();
  const char* last = s.data() + s.size();
  if (first != last && *first == '+') ++first;
  auto [ptr, ec] = std::from_chars(first, last, v);
  if (ec != std::errc() || ptr != last || first == last || !std::isfinite(v)) {
    error(e, "expected a number, got " + quoted(s));
    return false;
  }
  *out = v;
  return true;
}

bool Loader::readBool(const Entry& e, bool* out) {
  std::string s;
  if (!readScalar(e, "true or false", &s)) return false;
  std::string l = toLower(s);
  if (l == "true" || l == "yes" || l == "on") {
    *out = true;
  } else if (l == "false" || l == "no" || l == "off") {
    *out = false;
  } else {
    error(e, "expected true or false, got " + quoted(s));
    return false;
  }
  return true;
}

bool Loader::readDuration(const Entry& e, bool allow_zero, Duration* out) {
  std::string s;
  if (!readScalar(e, "a duration such as 5s", &s)) return false;
  auto d = parseDuration(s);
  if (!d.isOk()) {
    error(e, d.status().message());
    return false;
  }
  if (!allow_zero && d->count() == 0) {
    error(e, "must be greater than 0, got " + quoted(s));
    return false;
  }
  *out = *d;
  return true;
}

bool Loader::readSize(const Entry& e, uint64_t lo, uint64_t hi, uint64_t* out) {
  std::string s;
  if (!readScalar(e, "a size such as 16k", &s)) return false;
  auto v = parseSize(s);
  if (!v.isOk()) {
    error(e, v.status().message());
    return false;
  }
  if (*v < lo || *v > hi) {
    error(e, s + " is out of range (" + formatSize(lo) + ".." + formatSize(hi) + ")");
    return false;
  }
  *out = *v;
  return true;
}

bool Loader::readAddress(const Entry& e, SocketAddress* out) {
  std::string s;
  if (!readScalar(e, "an address such as 127.0.0.1:8080", &s)) return false;
  auto a = SocketAddress::parse(s);
  if (!a.isOk()) {
    error(e, a.status().message());
    return false;
  }
  *out = *a;
  return true;
}

template <typename E, size_t N>
bool Loader::readEnum(const Entry& e, const EnumName<E> (&table)[N], E* out) {
  std::string s;
  if (!readScalar(e, "one of: " + enumChoices(table), &s)) return false;
  for (const auto& item : table) {
    if (item.name == s) {
      *out = item.value;
      return true;
    }
  }
  error(e, "invalid value " + quoted(s) + " (expected one of: " + enumChoices(table) + ")");
  return false;
}

void Loader::load(const YAML::Node& root, Config* config) {
  if (root.IsNull()) {
    error(1, "listeners", "no listeners: the file is empty");
    return;
  }
  Entry top{root, "", "", lineOf(root), lineOf(root)};
  if (top.line == 0) top.line = top.key_line = 1;
  if (!root.IsMap()) {
    error(top.line, "",
          std::string("expected a map of settings at the top level, got ") + kindOf(root));
    return;
  }
  Fields f = fieldsOf(
      top, {"admin", "log", "workers", "drain_timeout", "listeners", "pools", "dataplane"});
  if (const Entry* e = f.get("admin")) loadAdmin(*e, &config->admin);
  if (const Entry* e = f.get("log")) loadLog(*e, &config->log);
  if (const Entry* e = f.get("workers")) readUint32(*e, 0, kMaxWorkers, &config->workers);
  if (const Entry* e = f.get("drain_timeout")) readDuration(*e, true, &config->drain_timeout);
  if (const Entry* e = f.get("dataplane")) loadDataplane(*e, &config->dataplane);

  if (const Entry* e = f.get("pools")) {
    Fields pools = fieldsOf(*e, {}, /*any_key=*/true);
    for (const Entry& p : pools.entries) {
      Pool pool;
      pool.name = p.key;
      if (!isValidName(p.key)) {
        error(p.key_line, p.path,
              "bad pool name " + quoted(p.key) + ": use letters, digits, '_', '.' and '-'");
      }
      loadPool(p, &pool);
      config->pools[p.key] = std::move(pool);
    }
  }

  const Entry* listeners = f.get("listeners");
  std::vector<Entry> items;
  if (listeners != nullptr) items = itemsOf(*listeners, "listeners");
  if (items.empty()) {
    // Only when "listeners" is absent, empty or null; a wrong type was reported by itemsOf.
    if (listeners == nullptr || listeners->value.IsNull() || listeners->value.IsSequence()) {
      int line = listeners != nullptr ? listeners->key_line : top.line;
      error(line, "listeners", "no listeners: add at least one under \"listeners:\"");
    }
  }
  for (const Entry& item : items) {
    Listener listener;
    listen_lines_.push_back(item.line);
    loadListener(item, &listener);
    config->listeners.push_back(std::move(listener));
  }
  checkListeners(*config);
}

void Loader::loadAdmin(const Entry& e, AdminConfig* out) {
  Fields f = fieldsOf(
      e, {"listen", "token_file", "state_file", "max_request_body_bytes", "tls", "audit_log"});
  if (const Entry* x = f.get("listen")) readAddress(*x, &out->listen);
  if (const Entry* x = f.get("token_file")) readString(*x, &out->token_file);
  if (const Entry* x = f.get("state_file")) {
    std::string path;
    if (readString(*x, &path)) {
      if (!path.empty() && (path.back() == '/' || hasControl(path))) {
        error(*x, "bad state_file " + quoted(path) +
                      ": expected a file path (\"\" = next to the config file)");
      } else {
        out->state_file = path;
      }
    }
  }
  if (const Entry* x = f.get("max_request_body_bytes")) {
    readSize(*x, kMinAdminBodyBytes, kMaxAdminBodyBytes, &out->max_request_body_bytes);
  }
  if (const Entry* x = f.get("audit_log")) {
    std::string path;
    if (readString(*x, &path)) {
      if (!path.empty() && (path.back() == '/' || hasControl(path))) {
        error(*x, "bad audit_log " + quoted(path) +
                      ": expected a file path (\"\" = next to the state file, \"off\" = none)");
      } else {
        out->audit_log = path;
      }
    }
  }
  if (const Entry* x = f.get("tls")) {
    Fields t = fieldsOf(*x, {"cert_file", "key_file", "client_ca_file"});
    if (!t.ok) return;
    out->tls.enabled = true;
    auto file = [&](const char* key, std::string* dst, bool required, const char* what) {
      if (const Entry* y = t.get(key)) {
        if (readString(*y, dst) && (dst->empty() || hasControl(*dst))) {
          error(*y, std::string("bad ") + key + " " + quoted(*dst) + ": expected " + what);
        }
      } else if (required) {
        missing(*x, key, what);
      }
    };
    file("cert_file", &out->tls.cert_file, true, "the PEM certificate chain file");
    file("key_file", &out->tls.key_file, true, "the PEM private key file");
    file("client_ca_file", &out->tls.client_ca_file, false,
         "a PEM file of the CAs that sign client certificates (mTLS)");
  }
}

void Loader::loadLog(const Entry& e, LogConfig* out) {
  Fields f = fieldsOf(e, {"level", "format"});
  if (const Entry* x = f.get("level")) readEnum(*x, kLogLevels, &out->level);
  if (const Entry* x = f.get("format")) readEnum(*x, kLogFormats, &out->format);
}

void Loader::loadListener(const Entry& e, Listener* out) {
  out->where = where(e);
  Fields f = fieldsOf(e, {"name", "protocol", "listen", "routes", "pool", "vip", "mode", "limits",
                          "timeouts", "forwarded_headers", "request_id_header", "proxy_protocol",
                          "splice", "tls", "http2", "access"});
  if (!f.ok) return;
  if (const Entry* x = f.get("name")) {
    readName(*x, &out->name);
  } else {
    missing(e, "name", "every listener needs a unique name");
  }
  if (const Entry* x = f.get("protocol")) readEnum(*x, kProtocols, &out->protocol);
  const std::string proto(enumName(kProtocols, out->protocol));
  const std::string by_proto = "by protocol " + proto + " listeners";
  if (const Entry* x = f.get("access")) loadAccess(*x, &out->access);

  if (out->protocol == ListenerProtocol::kL4) {
    notUsed(f, "listen", by_proto + " (they receive traffic on their vip)");
    if (const Entry* x = f.get("vip")) {
      loadVip(*x, out);
    } else {
      missing(e, "vip", "an l4 listener needs a virtual IP such as 10.0.0.10:80/tcp");
    }
    if (const Entry* x = f.get("mode")) readEnum(*x, kL4Modes, &out->mode);
  } else {
    if (const Entry* x = f.get("listen")) {
      readAddress(*x, &out->listen);
    } else {
      missing(e, "listen", "the address to accept connections on, such as 0.0.0.0:8080");
    }
    notUsed(f, "vip", by_proto + " (only by l4)");
    notUsed(f, "mode", by_proto + " (only by l4)");
  }

  if (out->protocol == ListenerProtocol::kHttp) {
    notUsed(f, "pool", by_proto + " (http listeners choose a pool per route)");
    for (const char* key : {"proxy_protocol", "splice"}) {
      notUsed(f, key, by_proto + " (only by tcp)");
    }
    if (const Entry* x = f.get("routes")) {
      std::vector<Entry> routes = itemsOf(*x, "routes");
      if (routes.empty() && (x->value.IsNull() || x->value.IsSequence())) {
        error(*x, "an http listener needs at least one route");
      }
      for (const Entry& r : routes) {
        Route route;
        loadRoute(r, &route);
        out->routes.push_back(std::move(route));
      }
    } else {
      missing(e, "routes", "an http listener needs at least one route");
    }
    if (const Entry* x = f.get("limits")) {
      loadLimits(*x, true, &out->limits, &out->client_limits);
    }
    if (const Entry* x = f.get("timeouts")) loadTimeouts(*x, &out->timeouts);
    if (const Entry* x = f.get("forwarded_headers")) readBool(*x, &out->xff);
    if (const Entry* x = f.get("tls")) loadTls(*x, &out->tls);
    if (const Entry* x = f.get("http2")) loadHttp2(*x, &out->http2);
    if (const Entry* x = f.get("request_id_header")) {
      std::string name;
      if (readString(*x, &name)) {
        if (!name.empty() && !isValidToken(name)) {
          error(*x, "bad header name " + quoted(name) + " (use \"\" to disable)");
        } else {
          out->request_id_header = toLower(name);
        }
      }
    }
  } else {
    notUsed(f, "routes", by_proto + " (they forward to one pool: set pool)");
    for (const char* key : {"forwarded_headers", "request_id_header", "tls", "http2"}) {
      notUsed(f, key, by_proto + " (only by http)");
    }
    if (out->protocol == ListenerProtocol::kTcp) {
      if (const Entry* x = f.get("limits")) {
        loadLimits(*x, false, &out->limits, &out->client_limits);
      }
      if (const Entry* x = f.get("timeouts")) loadTcpTimeouts(*x, &out->tcp);
      if (const Entry* x = f.get("proxy_protocol")) {
        readEnum(*x, kProxyProtocols, &out->tcp.proxy_protocol);
      }
      if (const Entry* x = f.get("splice")) readBool(*x, &out->tcp.splice);
    } else {
      for (const char* key : {"timeouts", "proxy_protocol", "splice", "limits"}) {
        notUsed(f, key, by_proto + " (only by http and tcp)");
      }
    }
    if (const Entry* x = f.get("pool")) {
      if (readString(*x, &out->pool)) pool_refs_.push_back({out->pool, x->path, x->line});
    } else {
      missing(e, "pool", "a " + proto + " listener forwards to one pool");
    }
  }
}

void Loader::loadRoute(const Entry& e, Route* out) {
  out->where = where(e);
  Fields f = fieldsOf(e, {"host", "path_prefix", "pool"});
  if (!f.ok) return;
  if (const Entry* x = f.get("host")) {
    std::string host;
    if (readString(*x, &host)) {
      if (!host.empty() && !isValidRouteHost(host)) {
        error(*x, "bad host " + quoted(host) +
                      ": expected a host name such as example.com or *.example.com");
      } else {
        out->host = toLower(host);
      }
    }
  }
  if (const Entry* x = f.get("path_prefix")) {
    std::string prefix;
    if (readString(*x, &prefix)) {
      if (prefix.empty() || prefix.front() != '/') {
        error(*x, "bad path_prefix " + quoted(prefix) + ": must start with /");
      } else if (hasSpaceOrControl(prefix) || prefix.find_first_of("?#") != std::string::npos) {
        error(*x, "bad path_prefix " + quoted(prefix) + ": no spaces, '?' or '#'");
      } else {
        out->path_prefix = prefix;
      }
    }
  }
  if (const Entry* x = f.get("pool")) {
    if (readString(*x, &out->pool)) pool_refs_.push_back({out->pool, x->path, x->line});
  } else {
    missing(e, "pool", "the pool this route sends requests to");
  }
}

void Loader::loadLimits(const Entry& e, bool http, HttpLimits* out, ClientLimits* client) {
  Fields f = fieldsOf(e, {"max_request_header_bytes", "max_headers", "max_uri_bytes",
                          "max_request_body_bytes", "max_connections", "max_connections_per_ip",
                          "requests_per_second_per_ip", "request_burst_per_ip"});
  if (!f.ok) return;
  if (const Entry* x = f.get("max_connections")) {
    readUint32(*x, 0, kMaxConnectionLimit, &client->max_connections);
  }
  if (const Entry* x = f.get("max_connections_per_ip")) {
    readUint32(*x, 0, kMaxConnectionLimit, &client->max_connections_per_ip);
  }
  if (!http) {
    const std::string why = "by protocol tcp listeners (they see connections, not requests)";
    for (const char* key :
         {"max_request_header_bytes", "max_headers", "max_uri_bytes", "max_request_body_bytes",
          "requests_per_second_per_ip", "request_burst_per_ip"}) {
      notUsed(f, key, why);
    }
    return;
  }
  if (const Entry* x = f.get("requests_per_second_per_ip")) {
    readUint32(*x, 0, kMaxRequestRate, &client->requests_per_second_per_ip);
  }
  if (const Entry* x = f.get("request_burst_per_ip")) {
    if (readUint32(*x, 0, kMaxRequestRate, &client->request_burst_per_ip) &&
        client->request_burst_per_ip > 0 && client->requests_per_second_per_ip == 0) {
      error(*x, "request_burst_per_ip needs requests_per_second_per_ip (the refill rate)");
    }
  }
  if (const Entry* x = f.get("max_request_header_bytes")) {
    readSize(*x, kMinHeaderBytes, kMaxHeaderBytes, &out->max_request_header_bytes);
  }
  if (const Entry* x = f.get("max_headers")) readUint32(*x, 1, kMaxHeaders, &out->max_headers);
  if (const Entry* x = f.get("max_uri_bytes")) {
    readSize(*x, kMinUriBytes, kMaxHeaderBytes, &out->max_uri_bytes);
  }
  if (const Entry* x = f.get("max_request_body_bytes")) {
    readSize(*x, 0, UINT64_MAX, &out->max_request_body_bytes);
  }
  if (out->max_uri_bytes > out->max_request_header_bytes) {
    const Entry* x = f.get("max_uri_bytes");
    if (x == nullptr) x = f.get("max_request_header_bytes");
    const Entry& at = x != nullptr ? *x : e;
    error(at.line, e.path + ".max_uri_bytes",
          "max_uri_bytes (" + formatSize(out->max_uri_bytes) +
              ") must not exceed max_request_header_bytes (" +
              formatSize(out->max_request_header_bytes) + ")");
  }
  if (client->max_connections > 0 && client->max_connections_per_ip > client->max_connections) {
    const Entry* x = f.get("max_connections_per_ip");
    error(x->line, x->path,
          "max_connections_per_ip (" + std::to_string(client->max_connections_per_ip) +
              ") must not exceed max_connections (" + std::to_string(client->max_connections) +
              ")");
  }
}

void Loader::loadAccess(const Entry& e, AccessList* out) {
  Fields f = fieldsOf(e, {"allow", "deny"});
  if (!f.ok) return;
  if (const Entry* x = f.get("allow")) loadCidrList(*x, &out->allow);
  if (const Entry* x = f.get("deny")) loadCidrList(*x, &out->deny);
}

void Loader::loadCidrList(const Entry& e, CidrSet* out) {
  for (const Entry& item : itemsOf(e, "CIDR prefixes such as 10.0.0.0/8")) {
    std::string text;
    if (!readString(item, &text)) continue;
    auto p = parseCidr(text);
    if (!p.isOk()) {
      error(item, "bad CIDR " + quoted(text) + ": " + p.status().message() +
                      " (expected 10.0.0.0/8, 2001:db8::/32 or a single address)");
      continue;
    }
    out->add(*p);
  }
  out->build();
}

void Loader::loadTimeouts(const Entry& e, HttpTimeouts* out) {
  Fields f = fieldsOf(e, {"request_header", "idle", "request", "send"});
  if (const Entry* x = f.get("send")) readDuration(*x, false, &out->send);
  if (const Entry* x = f.get("request_header")) readDuration(*x, false, &out->request_header);
  if (const Entry* x = f.get("idle")) readDuration(*x, false, &out->idle);
  if (const Entry* x = f.get("request")) readDuration(*x, false, &out->request);
}

void Loader::loadTcpTimeouts(const Entry& e, TcpSettings* out) {
  Fields f = fieldsOf(e, {"idle", "connect", "send"});
  if (const Entry* x = f.get("idle")) readDuration(*x, false, &out->idle);
  if (const Entry* x = f.get("connect")) readDuration(*x, false, &out->connect);
  if (const Entry* x = f.get("send")) readDuration(*x, false, &out->send);
}

void Loader::loadTls(const Entry& e, ListenerTls* out) {
  out->enabled = true;
  Fields f = fieldsOf(
      e, {"certificates", "min_version", "ciphers", "alpn", "session_tickets", "ticket_rotation"});
  if (!f.ok) return;
  if (const Entry* x = f.get("certificates")) {
    int defaults = 0;
    for (const Entry& item : itemsOf(*x, "certificates")) {
      TlsCertificate c;
      c.where = where(item);
      Fields cf = fieldsOf(item, {"cert", "key", "default"});
      if (!cf.ok) continue;
      if (const Entry* y = cf.get("cert")) {
        readString(*y, &c.cert_file);
      } else {
        missing(item, "cert", "the PEM certificate chain file");
      }
      if (const Entry* y = cf.get("key")) {
        readString(*y, &c.key_file);
      } else {
        missing(item, "key", "the PEM private key file");
      }
      if (const Entry* y = cf.get("default")) {
        readBool(*y, &c.is_default);
        if (c.is_default && ++defaults > 1) {
          error(*y, "only one certificate may be the default");
        }
      }
      out->certificates.push_back(std::move(c));
    }
  }
  if (out->certificates.empty()) {
    const Entry* x = f.get("certificates");
    error(x != nullptr ? x->line : e.line, e.path + ".certificates",
          "a tls listener needs at least one certificate ({cert: FILE, key: FILE})");
  }
  if (const Entry* x = f.get("min_version")) {
    std::string v;
    if (readString(*x, &v)) {
      if (v == "1.2") {
        out->min_version = TlsVersion::k12;
      } else if (v == "1.3") {
        out->min_version = TlsVersion::k13;
      } else {
        error(*x, "bad min_version " + quoted(v) + " (allowed: \"1.2\", \"1.3\")");
      }
    }
  }
  if (const Entry* x = f.get("ciphers")) readString(*x, &out->ciphers);
  if (const Entry* x = f.get("alpn")) {
    out->alpn.clear();
    for (const Entry& item : itemsOf(*x, "protocols")) {
      std::string p;
      if (!readString(item, &p)) continue;
      if (p != "h2" && p != "http/1.1") {
        error(item, "bad alpn protocol " + quoted(p) + " (allowed: h2, http/1.1)");
        continue;
      }
      out->alpn.push_back(p);
    }
  }
  if (const Entry* x = f.get("session_tickets")) readBool(*x, &out->session_tickets);
  if (const Entry* x = f.get("ticket_rotation")) readDuration(*x, false, &out->ticket_rotation);
}

void Loader::loadHttp2(const Entry& e, Http2Settings* out) {
  Fields f = fieldsOf(e, {"enabled", "max_concurrent_streams", "initial_window_bytes",
                          "reset_burst", "reset_rate", "max_continuations"});
  if (const Entry* x = f.get("enabled")) readBool(*x, &out->enabled);
  if (const Entry* x = f.get("max_concurrent_streams")) {
    readUint32(*x, 1, 10000, &out->max_concurrent_streams);
  }
  if (const Entry* x = f.get("initial_window_bytes")) {
    uint64_t v = 0;
    if (readSize(*x, 1024, (1u << 31) - 1, &v))
      out->initial_window_bytes = static_cast<uint32_t>(v);
  }
  if (const Entry* x = f.get("reset_burst")) readUint32(*x, 1, 1000000, &out->reset_burst);
  if (const Entry* x = f.get("reset_rate")) readUint32(*x, 1, 1000000, &out->reset_rate);
  if (const Entry* x = f.get("max_continuations")) {
    readUint32(*x, 0, 1000, &out->max_continuations);
  }
}

// "10.0.0.10:80/tcp", "[2001:db8::10]:53/udp"; the protocol defaults to tcp.
void Loader::loadVip(const Entry& e, Listener* out) {
  std::string s;
  if (!readScalar(e, "a VIP such as 10.0.0.10:80/tcp", &s)) return;
  std::string_view text = s;
  size_t slash = text.rfind('/');
  if (slash != std::string_view::npos) {
    std::string_view proto = text.substr(slash + 1);
    bool found = false;
    for (const auto& p : kIpProtos) {
      if (p.name == proto) {
        out->vip_proto = p.value;
        found = true;
      }
    }
    if (!found) {
      error(e, "bad vip " + quoted(s) + ": unknown protocol " + quoted(proto) +
                   " (expected tcp or udp)");
      return;
    }
    text = text.substr(0, slash);
  }
  auto a = SocketAddress::parse(text);
  if (!a.isOk()) {
    error(e, "bad vip " + quoted(s) + ": " + a.status().message());
    return;
  }
  if (a->port() == 0 || isWildcard(*a)) {
    error(e, "bad vip " + quoted(s) + ": needs a specific IP address and a port other than 0");
    return;
  }
  out->vip = *a;
}

void Loader::loadPool(const Entry& e, Pool* out) {
  out->where = where(e);
  Fields f =
      fieldsOf(e, {"mode", "balance", "hash", "maglev_table_size", "slow_start", "upstream",
                   "health", "outlier", "low_health", "drain_timeout", "proxy_protocol",
                   "members", "autoscale"});
  if (!f.ok) return;
  if (const Entry* x = f.get("mode")) readEnum(*x, kPoolModes, &out->mode);
  if (const Entry* x = f.get("balance")) readEnum(*x, kBalances, &out->balance);
  if (const Entry* x = f.get("hash")) {
    loadHash(*x, &out->hash);
    if (out->balance != BalanceAlgorithm::kMaglev && out->balance != BalanceAlgorithm::kRingHash) {
      error(x->key_line, x->path,
            "not used by balance " + std::string(balanceName(out->balance)) +
                " (only by maglev and ring_hash)");
    }
  }
  if (const Entry* x = f.get("maglev_table_size")) {
    uint32_t size = 0;
    if (readUint32(*x, kMinMaglevTableSize, kMaxMaglevTableSize, &size)) {
      if (!isPrime(size)) {
        error(*x, std::to_string(size) + " is not a prime number (try 65537 or 251)");
      } else {
        out->maglev_table_size = size;
      }
    }
  }
  if (const Entry* x = f.get("slow_start")) readDuration(*x, true, &out->slow_start);
  if (const Entry* x = f.get("upstream")) loadUpstream(*x, &out->upstream);
  if (const Entry* x = f.get("health")) loadHealth(*x, &out->health);
  if (const Entry* x = f.get("outlier")) loadOutlier(*x, &out->outlier);
  if (const Entry* x = f.get("low_health")) loadLowHealth(*x, &out->low_health);
  if (const Entry* x = f.get("drain_timeout")) readDuration(*x, true, &out->drain_timeout);
  if (const Entry* x = f.get("proxy_protocol")) {
    if (readEnum(*x, kProxyProtocols, &out->proxy_protocol) &&
        out->proxy_protocol != ProxyProtocol::kNone) {
      proxy_protocol_lines_[out->name] = x->key_line;
    }
  }
  if (const Entry* x = f.get("members")) {
    std::unordered_map<std::string, int> ids;
    std::unordered_map<SocketAddress, int, SocketAddressHash> addresses;
    for (const Entry& m : itemsOf(*x, "members")) {
      Member member;
      loadMember(m, &member);
      if (!member.id.empty()) {
        auto [it, inserted] = ids.emplace(member.id, m.line);
        if (!inserted) {
          error(m.line, m.path + ".id",
                "duplicate member id " + quoted(member.id) + " (first at line " +
                    std::to_string(it->second) + ")");
        }
      }
      if (member.address.valid()) {
        auto [it, inserted] = addresses.emplace(member.address, m.line);
        if (!inserted) {
          error(m.line, m.path + ".address",
                "duplicate member address " + member.address.toString() + " (first at line " +
                    std::to_string(it->second) + ")");
        }
      }
      out->members.push_back(std::move(member));
    }
  }
  if (const Entry* x = f.get("members")) {
    if (out->mode == PoolMode::kUniform) checkUniformMembers(*x, *out);
  }
  if (const Entry* x = f.get("autoscale")) loadAutoscale(*x, *out, &out->autoscale);
}

// Uniform pools (Azure Uniform orchestration): one weight and one version for every member.
void Loader::checkUniformMembers(const Entry& members, const Pool& pool) {
  if (pool.members.size() < 2) return;
  const Member& first = pool.members.front();
  for (size_t i = 1; i < pool.members.size(); ++i) {
    const Member& m = pool.members[i];
    std::string path = members.path + "[" + std::to_string(i) + "]";
    if (m.weight != first.weight) {
      error(m.where.line, path + ".weight",
            "member " + quoted(m.id) + " has weight " + std::to_string(m.weight) + " but " +
                quoted(first.id) + " has " + std::to_string(first.weight) +
                ": every member of a uniform pool has the same weight (use mode: flexible)");
    }
    if (m.version != first.version) {
      error(m.where.line, path + ".version",
            "member " + quoted(m.id) + " has version " + quoted(m.version) + " but " +
                quoted(first.id) + " has " + quoted(first.version) +
                ": every member of a uniform pool runs the same version (use mode: flexible)");
    }
  }
}

void Loader::loadHash(const Entry& e, HashKey* out) {
  Fields f = fieldsOf(e, {"source", "name"});
  if (!f.ok) return;
  if (const Entry* x = f.get("source")) readEnum(*x, kHashSources, &out->source);
  const Entry* name = f.get("name");
  if (out->source == HashSource::kClientIp) {
    if (name != nullptr) error(name->key_line, name->path, "not used by source client_ip");
    return;
  }
  const std::string what = out->source == HashSource::kHeader ? "header" : "cookie";
  if (name == nullptr) {
    missing(e, "name", "the " + what + " to hash on");
    return;
  }
  std::string s;
  if (!readString(*name, &s)) return;
  if (!isValidToken(s)) {
    error(*name, "bad " + what + " name " + quoted(s));
    return;
  }
  // Header names are case-insensitive, and stored lower-case; cookie names are not.
  out->name = out->source == HashSource::kHeader ? toLower(s) : s;
}

void Loader::loadUpstream(const Entry& e, UpstreamSettings* out) {
  Fields f =
      fieldsOf(e, {"protocol", "h2_max_streams_per_connection", "h2_max_connections_per_member",
                   "connect_timeout", "idle_timeout", "max_idle_per_member", "retries", "tls"});
  if (const Entry* x = f.get("protocol")) readEnum(*x, kUpstreamProtocols, &out->protocol);
  if (out->protocol == UpstreamProtocol::kH2) {
    if (const Entry* x = f.get("h2_max_streams_per_connection")) {
      readUint32(*x, 1, kMaxH2Streams, &out->h2_max_streams_per_connection);
    }
    if (const Entry* x = f.get("h2_max_connections_per_member")) {
      readUint32(*x, 1, kMaxH2Connections, &out->h2_max_connections_per_member);
    }
  } else {
    notUsed(f, "h2_max_streams_per_connection", "with protocol http1 (only with h2)");
    notUsed(f, "h2_max_connections_per_member", "with protocol http1 (only with h2)");
  }
  if (const Entry* x = f.get("tls")) {
    out->tls = true;
    Fields t = fieldsOf(*x, {"ca_file", "verify", "server_name"});
    if (const Entry* y = t.get("ca_file")) readString(*y, &out->tls_ca_file);
    if (const Entry* y = t.get("verify")) readBool(*y, &out->tls_verify);
    if (const Entry* y = t.get("server_name")) readString(*y, &out->tls_server_name);
  }
  if (const Entry* x = f.get("connect_timeout")) readDuration(*x, false, &out->connect_timeout);
  if (const Entry* x = f.get("idle_timeout")) readDuration(*x, false, &out->idle_timeout);
  if (const Entry* x = f.get("max_idle_per_member")) {
    readUint32(*x, 0, kMaxIdlePerMember, &out->max_idle_per_member);
  }
  if (const Entry* x = f.get("retries")) readUint32(*x, 0, kMaxRetries, &out->retries);
}

void Loader::loadHealth(const Entry& e, HealthCheck* out) {
  Fields f = fieldsOf(e, {"type", "path", "host", "expect", "interval", "jitter", "timeout",
                          "fast_interval", "rise", "fall", "initial_state"});
  if (!f.ok) return;
  out->enabled = true;
  if (const Entry* x = f.get("type")) readEnum(*x, kHealthTypes, &out->type);
  if (out->type == HealthCheckType::kTcp) {
    for (const char* key : {"path", "host", "expect"}) {
      notUsed(f, key, "by type tcp checks (only by http and https)");
    }
  } else {
    if (const Entry* x = f.get("path")) {
      std::string path;
      if (readString(*x, &path)) {
        if (path.empty() || path.front() != '/' || hasSpaceOrControl(path)) {
          error(*x, "bad path " + quoted(path) + ": must start with / and contain no spaces");
        } else {
          out->path = path;
        }
      }
    }
    if (const Entry* x = f.get("host")) {
      std::string host;
      if (readString(*x, &host)) {
        if (hasSpaceOrControl(host)) {
          error(*x, "bad host " + quoted(host) + ": no spaces or control characters");
        } else {
          out->host = host;
        }
      }
    }
    if (const Entry* x = f.get("expect")) loadExpect(*x, &out->expect);
  }
  if (const Entry* x = f.get("interval")) readDuration(*x, false, &out->interval);
  if (const Entry* x = f.get("jitter")) readDuration(*x, true, &out->jitter);
  bool timeout_ok = true;
  if (const Entry* x = f.get("timeout")) timeout_ok = readDuration(*x, false, &out->timeout);
  if (const Entry* x = f.get("fast_interval")) readDuration(*x, true, &out->fast_interval);
  if (const Entry* x = f.get("rise")) readUint32(*x, 1, kMaxRiseFall, &out->rise);
  if (const Entry* x = f.get("fall")) readUint32(*x, 1, kMaxRiseFall, &out->fall);
  if (const Entry* x = f.get("initial_state")) {
    readEnum(*x, kInitialStates, &out->initially_healthy);
  }
  if (timeout_ok && out->timeout >= out->interval) {
    const Entry* x = f.get("timeout");
    if (x == nullptr) x = f.get("interval");
    error(x != nullptr ? x->line : e.key_line, e.path + ".timeout",
          "timeout (" + formatDuration(out->timeout) + ") must be shorter than interval (" +
              formatDuration(out->interval) + ")");
  }
}

void Loader::loadOutlier(const Entry& e, OutlierDetection* out) {
  Fields f = fieldsOf(e, {"enabled", "consecutive_failures", "base_ejection", "max_ejection",
                          "max_ejection_percent"});
  if (!f.ok) return;
  if (const Entry* x = f.get("enabled")) readBool(*x, &out->enabled);
  if (const Entry* x = f.get("consecutive_failures")) {
    readUint32(*x, 1, kMaxOutlierFailures, &out->consecutive_failures);
  }
  bool durations_ok = true;
  if (const Entry* x = f.get("base_ejection")) {
    durations_ok &= readDuration(*x, false, &out->base_ejection);
  }
  if (const Entry* x = f.get("max_ejection")) {
    durations_ok &= readDuration(*x, false, &out->max_ejection);
  }
  if (const Entry* x = f.get("max_ejection_percent")) {
    readUint32(*x, 0, 100, &out->max_ejection_percent);
  }
  if (durations_ok && out->max_ejection < out->base_ejection) {
    const Entry* x = f.get("max_ejection");
    if (x == nullptr) x = f.get("base_ejection");
    error(x != nullptr ? x->line : e.key_line, e.path + ".max_ejection",
          "max_ejection (" + formatDuration(out->max_ejection) +
              ") must not be shorter than base_ejection (" + formatDuration(out->base_ejection) +
              ")");
  }
}

void Loader::loadLowHealth(const Entry& e, LowHealthPolicy* out) {
  Fields f = fieldsOf(e, {"threshold_percent", "action"});
  if (const Entry* x = f.get("threshold_percent")) {
    readUint32(*x, 0, 100, &out->threshold_percent);
  }
  if (const Entry* x = f.get("action")) readEnum(*x, kLowHealthActions, &out->action);
}

// [200, "200-299", "2xx"] or a single such value.
void Loader::loadExpect(const Entry& e, std::vector<StatusRange>* out) {
  std::vector<Entry> items;
  if (e.value.IsScalar()) {
    items.push_back(e);
  } else {
    items = itemsOf(e, "status codes");
    if (items.empty() && (e.value.IsNull() || e.value.IsSequence())) {
      error(e, "expected at least one status code or range such as 200-299");
      return;
    }
  }
  std::vector<StatusRange> ranges;
  bool all_ok = true;
  for (const Entry& item : items) {
    std::string s;
    if (!readScalar(item, "a status code or range such as 200-299", &s)) {
      all_ok = false;
      continue;
    }
    int lo = 0;
    int hi = 0;
    auto number = [](std::string_view t, int* v) {
      auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), *v);
      return ec == std::errc() && ptr == t.data() + t.size() && !t.empty();
    };
    size_t dash = s.find('-');
    bool parsed;
    if (s.size() == 3 && (s[1] == 'x' || s[1] == 'X') && (s[2] == 'x' || s[2] == 'X') &&
        s[0] >= '1' && s[0] <= '5') {
      lo = (s[0] - '0') * 100;
      hi = lo + 99;
      parsed = true;
    } else if (dash == std::string::npos) {
      parsed = number(s, &lo);
      hi = lo;
    } else {
      parsed = number(std::string_view(s).substr(0, dash), &lo) &&
               number(std::string_view(s).substr(dash + 1), &hi);
    }
    if (!parsed) {
      error(item, "bad status " + quoted(s) +
                      ": expected a code such as 200, a range such as "
                      "200-299, or a class such as 2xx");
      all_ok = false;
    } else if (lo < 100 || hi > 599 || lo > hi) {
      error(item, "bad status " + quoted(s) + ": codes must be within 100..599, low to high");
      all_ok = false;
    } else {
      ranges.push_back({lo, hi});
    }
  }
  if (all_ok) *out = std::move(ranges);
}

void Loader::loadMember(const Entry& e, Member* out) {
  out->where = where(e);
  Fields f =
      fieldsOf(e, {"id", "address", "zone", "fault_domain", "weight", "version", "protected"});
  if (!f.ok) return;
  if (const Entry* x = f.get("id")) {
    readName(*x, &out->id);
  } else {
    missing(e, "id", "every member needs an id, unique in its pool");
  }
  if (const Entry* x = f.get("address")) {
    SocketAddress a;
    if (readAddress(*x, &a)) {
      if (a.port() == 0 || isWildcard(a)) {
        error(*x, "bad member address " + a.toString() +
                      ": needs a specific IP address and a port other than 0");
      } else {
        out->address = a;
      }
    }
  } else {
    missing(e, "address", "the member's ip:port, such as 10.0.0.5:8080");
  }
  if (const Entry* x = f.get("zone")) readString(*x, &out->zone);
  if (const Entry* x = f.get("fault_domain")) {
    readUint32(*x, 0, kMaxFaultDomain, &out->fault_domain);
  }
  if (const Entry* x = f.get("weight")) readUint32(*x, 0, kMaxWeight, &out->weight);
  if (const Entry* x = f.get("version")) {
    std::string v;
    if (readString(*x, &v)) {
      if (hasSpaceOrControl(v) || v.size() > 128) {
        error(*x, "bad version " + quoted(v) + ": at most 128 characters, no spaces");
      } else {
        out->version = std::move(v);
      }
    }
  }
  if (const Entry* x = f.get("protected")) readBool(*x, &out->scale_in_protected);
}

void Loader::loadAutoscale(const Entry& e, const Pool& pool, AutoscaleConfig* out) {
  Fields f = fieldsOf(e, {"evaluation_interval", "capacity", "scaler", "rules", "target",
                          "profiles", "repair", "scale_in", "zones", "upgrade"});
  if (!f.ok) return;
  out->enabled = true;
  if (const Entry* x = f.get("evaluation_interval")) {
    Duration d{};
    if (readDuration(*x, false, &d)) {
      if (d < 1s || d > 1h) {
        error(*x, "must be between 1s and 1h, got " + quoted(x->value.Scalar()));
      } else {
        out->evaluation_interval = d;
      }
    }
  }
  if (const Entry* x = f.get("capacity")) {
    loadCapacity(*x, &out->min, &out->max, &out->default_capacity);
  }
  if (const Entry* x = f.get("scaler")) {
    loadScaler(*x, &out->scaler);
  } else {
    missing(e, "scaler", "autoscale sends its decisions to a scaler: set scaler.url");
  }
  if (const Entry* x = f.get("rules")) loadRules(*x, out->min, out->max, &out->rules);
  if (const Entry* x = f.get("target")) loadTarget(*x, &out->target);
  if (const Entry* x = f.get("profiles")) {
    std::vector<Entry> items = itemsOf(*x, "profiles");
    if (items.size() > kMaxProfiles) {
      error(*x, "at most " + std::to_string(kMaxProfiles) + " profiles, got " +
                    std::to_string(items.size()));
    }
    std::unordered_map<std::string, int> names;
    for (const Entry& p : items) {
      AutoscaleProfile profile;
      loadProfile(p, &profile);
      if (!profile.name.empty()) {
        auto [it, inserted] = names.emplace(profile.name, p.line);
        if (!inserted || profile.name == "default") {
          error(p.line, p.path + ".name",
                inserted ? std::string("\"default\" is the name of the top-level profile")
                         : "duplicate profile name " + quoted(profile.name) + " (first at line " +
                               std::to_string(it->second) + ")");
        }
      }
      out->profiles.push_back(std::move(profile));
    }
  }
  if (const Entry* x = f.get("repair")) loadRepair(*x, &out->repair);
  if (const Entry* x = f.get("scale_in")) {
    Fields s = fieldsOf(*x, {"policy", "drain", "prioritize_unhealthy"});
    if (const Entry* y = s.get("policy")) readEnum(*y, kScaleInPolicies, &out->scale_in.policy);
    if (const Entry* y = s.get("drain")) readDuration(*y, true, &out->scale_in.drain);
    if (const Entry* y = s.get("prioritize_unhealthy")) {
      readBool(*y, &out->scale_in.prioritize_unhealthy);
    }
  }
  if (const Entry* x = f.get("zones")) {
    std::vector<Entry> items = itemsOf(*x, "zones");
    if (items.size() > kMaxZones) {
      error(*x,
            "at most " + std::to_string(kMaxZones) + " zones, got " + std::to_string(items.size()));
    }
    for (const Entry& z : items) {
      std::string zone;
      if (!readString(z, &zone)) continue;
      if (zone.empty() || hasSpaceOrControl(zone) || zone.size() > 64) {
        error(z, "bad zone " + quoted(zone) + ": 1..64 characters, no spaces");
      } else if (std::find(out->zones.begin(), out->zones.end(), zone) != out->zones.end()) {
        error(z, "duplicate zone " + quoted(zone));
      } else {
        out->zones.push_back(std::move(zone));
      }
    }
    if (!out->zones.empty()) {
      for (size_t i = 0; i < pool.members.size(); ++i) {
        const Member& m = pool.members[i];
        if (std::find(out->zones.begin(), out->zones.end(), m.zone) == out->zones.end()) {
          error(m.where.line, "pools." + pool.name + ".members[" + std::to_string(i) + "].zone",
                "zone " + quoted(m.zone) + " of member " + quoted(m.id) +
                    " is not one of autoscale.zones");
        }
      }
    }
  }
  if (const Entry* x = f.get("upgrade")) loadUpgrade(*x, &out->upgrade);
}

bool Loader::loadCapacity(const Entry& e, uint32_t* min, uint32_t* max, uint32_t* def) {
  Fields c = fieldsOf(e, {"min", "max", "default"});
  bool ok = c.ok;
  if (const Entry* y = c.get("min")) ok &= readUint32(*y, 0, kMaxCapacity, min);
  if (const Entry* y = c.get("max")) ok &= readUint32(*y, 1, kMaxCapacity, max);
  if (const Entry* y = c.get("default")) ok &= readUint32(*y, 0, kMaxCapacity, def);
  if (ok && !(*min <= *def && *def <= *max)) {
    error(e.key_line, e.path,
          "need min <= default <= max, got min " + std::to_string(*min) + ", default " +
              std::to_string(*def) + ", max " + std::to_string(*max));
    ok = false;
  }
  return ok;
}

void Loader::loadRules(const Entry& e, uint32_t min, uint32_t max, std::vector<ScaleRule>* out) {
  std::vector<Entry> items = itemsOf(e, "rules");
  if (items.size() > kMaxRulesPerProfile) {
    error(e, "at most " + std::to_string(kMaxRulesPerProfile) + " rules per profile, got " +
                 std::to_string(items.size()));
  }
  for (const Entry& r : items) {
    ScaleRule rule;
    loadScaleRule(r, min, max, &rule);
    out->push_back(std::move(rule));
  }
}

void Loader::loadScaler(const Entry& e, ScalerEndpoint* out) {
  Fields s =
      fieldsOf(e, {"url", "secret_file", "format", "timeout", "max_attempts", "max_backoff"});
  if (const Entry* y = s.get("url")) {
    std::string url;
    if (readString(*y, &url)) {
      std::string_view rest = url;
      bool scheme = false;
      for (std::string_view prefix : {"http://", "https://"}) {
        if (rest.substr(0, prefix.size()) == prefix) {
          rest.remove_prefix(prefix.size());
          scheme = true;
          break;
        }
      }
      std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
      std::string_view host;
      uint16_t port = 0;
      if (!scheme || hasSpaceOrControl(url) || !splitHostPort(authority, &host, &port)) {
        error(*y, "bad url " + quoted(url) +
                      ": expected http:// or https:// and a host, such as "
                      "http://127.0.0.1:9800/hooks");
      } else {
        out->url = url;
      }
    }
  } else if (s.ok) {
    missing(e, "url", "where scale webhooks are sent");
  }
  if (const Entry* y = s.get("secret_file")) readString(*y, &out->secret_file);
  if (const Entry* y = s.get("format")) readEnum(*y, kScalerFormats, &out->format);
  if (const Entry* y = s.get("timeout")) readDuration(*y, false, &out->timeout);
  if (const Entry* y = s.get("max_attempts")) {
    readUint32(*y, 1, kMaxScalerAttempts, &out->max_attempts);
  }
  if (const Entry* y = s.get("max_backoff")) readDuration(*y, false, &out->max_backoff);
}

void Loader::loadTarget(const Entry& e, std::optional<TargetTracking>* out) {
  Fields t = fieldsOf(
      e, {"metric", "value", "tolerance", "scale_down_stabilization", "statistic", "window"});
  if (!t.ok) return;
  TargetTracking target;
  bool ok = true;
  if (const Entry* y = t.get("metric")) {
    ok &= readName(*y, &target.metric);
  } else {
    missing(e, "metric", "the metric to hold at value, such as cpu");
    ok = false;
  }
  if (const Entry* y = t.get("value")) {
    if (readDouble(*y, &target.value)) {
      if (target.value <= 0) {
        error(*y, "must be greater than 0");
        ok = false;
      }
    } else {
      ok = false;
    }
  } else {
    missing(e, "value", "the per-member level to hold the metric at");
    ok = false;
  }
  if (const Entry* y = t.get("tolerance")) {
    if (readDouble(*y, &target.tolerance)) {
      if (target.tolerance < 0 || target.tolerance >= 1) {
        error(*y, "must be in 0..1 (a fraction: 0.1 = 10%), got " + quoted(y->value.Scalar()));
        ok = false;
      }
    } else {
      ok = false;
    }
  }
  if (const Entry* y = t.get("scale_down_stabilization")) {
    ok &= readDuration(*y, true, &target.scale_down_stabilization);
  }
  if (const Entry* y = t.get("statistic")) ok &= readEnum(*y, kStatistics, &target.statistic);
  if (const Entry* y = t.get("window")) ok &= readDuration(*y, false, &target.window);
  if (ok) *out = std::move(target);
}

void Loader::loadProfile(const Entry& e, AutoscaleProfile* out) {
  out->where = where(e);
  Fields f = fieldsOf(e, {"name", "capacity", "rules", "target", "schedule"});
  if (!f.ok) return;
  if (const Entry* x = f.get("name")) {
    readName(*x, &out->name);
  } else {
    missing(e, "name", "every profile needs a name, such as business-hours");
  }
  if (const Entry* x = f.get("capacity")) {
    loadCapacity(*x, &out->min, &out->max, &out->default_capacity);
  } else {
    missing(e, "capacity", "a profile sets its own min, max and default");
  }
  if (const Entry* x = f.get("rules")) loadRules(*x, out->min, out->max, &out->rules);
  if (const Entry* x = f.get("target")) loadTarget(*x, &out->target);
  if (const Entry* x = f.get("schedule")) {
    loadSchedule(*x, &out->schedule);
  } else {
    missing(e, "schedule",
            "{start, end} as RFC 3339 times, or {days, start, end, time_zone_offset}");
  }
}

void Loader::loadSchedule(const Entry& e, ProfileSchedule* out) {
  Fields f = fieldsOf(e, {"start", "end", "days", "time_zone_offset"});
  if (!f.ok) return;
  const Entry* start = f.get("start");
  const Entry* end = f.get("end");
  if (start == nullptr) missing(e, "start");
  if (end == nullptr) missing(e, "end");
  if (const Entry* days = f.get("days")) {
    out->kind = ProfileSchedule::Kind::kWeekly;
    std::vector<Entry> items = itemsOf(*days, "weekdays");
    if (items.empty() && (days->value.IsNull() || days->value.IsSequence())) {
      error(*days, "name at least one weekday, such as [Mon, Tue]");
    }
    for (const Entry& d : items) {
      std::string name;
      if (!readString(d, &name)) continue;
      std::string l = toLower(name);
      bool found = false;
      for (int i = 0; i < 7; ++i) {
        if (l == kWeekdays[i] || l == kWeekdaysLong[i]) {
          out->days = static_cast<uint8_t>(out->days | (1u << i));
          found = true;
        }
      }
      if (!found) error(d, "bad weekday " + quoted(name) + " (expected Mon, Tue, ... Sun)");
    }
    bool ok = true;
    if (start != nullptr) ok &= readClock(*start, 1439, &out->start_minute);
    if (end != nullptr) ok &= readClock(*end, 1440, &out->end_minute);
    if (ok && start != nullptr && end != nullptr && out->start_minute == out->end_minute) {
      error(*end, "end equals start: the window would be empty (use \"24:00\" for midnight)");
    }
    if (const Entry* z = f.get("time_zone_offset")) readUtcOffset(*z, &out->utc_offset_minutes);
    return;
  }
  out->kind = ProfileSchedule::Kind::kFixed;
  if (const Entry* z = f.get("time_zone_offset")) {
    error(z->key_line, z->path,
          "not used by a fixed-date schedule (put the offset in the start and end times)");
  }
  bool ok = true;
  if (start != nullptr) ok &= readTimestamp(*start, &out->start);
  if (end != nullptr) ok &= readTimestamp(*end, &out->end);
  if (ok && start != nullptr && end != nullptr && out->end <= out->start) {
    error(*end, "end must be after start");
  }
}

// "HH:MM", 00:00 .. max_minute (23:59 or 24:00).
bool Loader::readClock(const Entry& e, uint32_t max_minute, uint32_t* out) {
  std::string s;
  if (!readScalar(e, "a time of day such as 08:30", &s)) return false;
  bool shape = s.size() == 5 && s[2] == ':' && std::isdigit(static_cast<unsigned char>(s[0])) &&
               std::isdigit(static_cast<unsigned char>(s[1])) &&
               std::isdigit(static_cast<unsigned char>(s[3])) &&
               std::isdigit(static_cast<unsigned char>(s[4]));
  uint32_t h = shape ? static_cast<uint32_t>((s[0] - '0') * 10 + (s[1] - '0')) : 0;
  uint32_t m = shape ? static_cast<uint32_t>((s[3] - '0') * 10 + (s[4] - '0')) : 0;
  if (!shape || m > 59 || h * 60 + m > max_minute) {
    error(e, "bad time of day " + quoted(s) + " (expected HH:MM, 00:00.." +
                 (max_minute == 1440 ? "24:00" : "23:59") + ")");
    return false;
  }
  *out = h * 60 + m;
  return true;
}

namespace {

// "+01:00", "-05:30", "Z" -> minutes east of UTC; false when malformed or beyond ±14:00.
bool parseOffset(std::string_view s, int32_t* out) {
  if (s == "Z" || s == "z") {
    *out = 0;
    return true;
  }
  if (s.size() != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':') return false;
  for (size_t i : {1, 2, 4, 5}) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  int h = (s[1] - '0') * 10 + (s[2] - '0');
  int m = (s[4] - '0') * 10 + (s[5] - '0');
  if (m > 59 || h * 60 + m > 14 * 60) return false;
  *out = (s[0] == '-' ? -1 : 1) * (h * 60 + m);
  return true;
}

// RFC 3339 "2026-12-24T08:00:00Z" / "2026-12-24T08:00:00.5+01:00" -> UTC time point.
bool parseRfc3339(std::string_view s, WallTime* out) {
  auto num = [&](size_t pos, size_t len, int* v) {
    if (pos + len > s.size()) return false;
    *v = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
      *v = *v * 10 + (s[i] - '0');
    }
    return true;
  };
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (s.size() < 20 || !num(0, 4, &y) || s[4] != '-' || !num(5, 2, &mo) || s[7] != '-' ||
      !num(8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !num(11, 2, &h) ||
      s[13] != ':' || !num(14, 2, &mi) || s[16] != ':' || !num(17, 2, &sec)) {
    return false;
  }
  size_t pos = 19;
  int64_t frac_ns = 0;
  if (s[pos] == '.') {
    ++pos;
    int64_t scale = 100'000'000;
    size_t digits = 0;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
      frac_ns += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
      ++digits;
    }
    if (digits == 0) return false;
  }
  int32_t offset = 0;
  if (!parseOffset(s.substr(pos), &offset)) return false;
  std::chrono::year_month_day ymd{std::chrono::year{y},
                                  std::chrono::month{static_cast<unsigned>(mo)},
                                  std::chrono::day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || sec > 60) return false;
  auto t = std::chrono::sys_days{ymd} + std::chrono::hours{h} + std::chrono::minutes{mi} +
           std::chrono::seconds{sec} - std::chrono::minutes{offset};
  *out = WallTime{std::chrono::duration_cast<WallTime::duration>(
      t.time_since_epoch() + std::chrono::nanoseconds{frac_ns})};
  return true;
}

}  // namespace

bool Loader::readUtcOffset(const Entry& e, int32_t* out_minutes) {
  std::string s;
  if (!readScalar(e, "a UTC offset such as +01:00", &s)) return false;
  if (!parseOffset(s, out_minutes)) {
    error(e, "bad UTC offset " + quoted(s) +
                 " (expected +HH:MM or -HH:MM within ±14:00, or Z; time zone names are not "
                 "supported)");
    return false;
  }
  return true;
}

bool Loader::readTimestamp(const Entry& e, WallTime* out) {
  std::string s;
  if (!readScalar(e, "an RFC 3339 time such as 2026-12-24T08:00:00Z", &s)) return false;
  if (!parseRfc3339(s, out)) {
    error(e, "bad time " + quoted(s) +
                 " (expected RFC 3339 such as 2026-12-24T08:00:00Z or 2026-12-24T08:00:00+01:00)");
    return false;
  }
  return true;
}

void Loader::loadRepair(const Entry& e, RepairPolicy* out) {
  Fields r = fieldsOf(
      e, {"grace", "action", "max_percent", "suspend_after_failures", "suspend_for", "timeout"});
  if (r.ok) out->enabled = true;
  if (const Entry* y = r.get("grace")) readDuration(*y, true, &out->grace);
  if (const Entry* y = r.get("action")) readEnum(*y, kRepairActions, &out->action);
  if (const Entry* y = r.get("max_percent")) readUint32(*y, 1, 100, &out->max_percent);
  if (const Entry* y = r.get("suspend_after_failures")) {
    readUint32(*y, 1, kMaxRepairFailures, &out->suspend_after_failures);
  }
  if (const Entry* y = r.get("suspend_for")) readDuration(*y, false, &out->suspend_for);
  if (const Entry* y = r.get("timeout")) readDuration(*y, false, &out->timeout);
}

// "20%" (1..100) or a count "3" (1..1000).
bool Loader::readCountOrPercent(const Entry& e, CountOrPercent* out) {
  std::string s;
  if (!readScalar(e, "a count or a percentage such as 20%", &s)) return false;
  bool percent = !s.empty() && s.back() == '%';
  std::string_view digits(s.data(), s.size() - (percent ? 1 : 0));
  uint32_t v = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  uint32_t hi = percent ? 100 : kMaxCapacity;
  if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() || v < 1 ||
      v > hi) {
    error(e, "expected a percentage 1%..100% or a count 1.." + std::to_string(kMaxCapacity) +
                 ", got " + quoted(s));
    return false;
  }
  *out = CountOrPercent{v, percent};
  return true;
}

void Loader::loadUpgrade(const Entry& e, UpgradeDefaults* out) {
  Fields u =
      fieldsOf(e, {"batch", "max_unhealthy", "max_unhealthy_upgraded", "pause", "health_timeout"});
  if (const Entry* y = u.get("batch")) readCountOrPercent(*y, &out->batch);
  if (const Entry* y = u.get("max_unhealthy")) readCountOrPercent(*y, &out->max_unhealthy);
  if (const Entry* y = u.get("max_unhealthy_upgraded")) {
    readCountOrPercent(*y, &out->max_unhealthy_upgraded);
  }
  if (const Entry* y = u.get("pause")) readDuration(*y, true, &out->pause);
  if (const Entry* y = u.get("health_timeout")) readDuration(*y, false, &out->health_timeout);
}

void Loader::loadScaleRule(const Entry& e, uint32_t min, uint32_t max, ScaleRule* out) {
  out->where = where(e);
  Fields f = fieldsOf(e, {"metric", "statistic", "window", "aggregation", "op", "threshold",
                          "divide_per_instance", "action", "direction", "cooldown"});
  if (!f.ok) return;
  if (const Entry* x = f.get("metric")) {
    readName(*x, &out->metric);
  } else {
    missing(e, "metric", "the metric this rule watches, such as cpu");
  }
  if (const Entry* x = f.get("statistic")) readEnum(*x, kStatistics, &out->statistic);
  if (const Entry* x = f.get("window")) readDuration(*x, false, &out->window);
  if (const Entry* x = f.get("aggregation")) readEnum(*x, kAggregations, &out->aggregation);
  bool op_ok = false;
  if (const Entry* x = f.get("op")) {
    op_ok = readEnum(*x, kCompareOps, &out->op);
  } else {
    missing(e, "op", "one of \">\", \">=\", \"<\", \"<=\", \"==\", \"!=\"");
  }
  if (const Entry* x = f.get("threshold")) {
    readDouble(*x, &out->threshold);
  } else {
    missing(e, "threshold", "the value the metric is compared with");
  }
  if (const Entry* x = f.get("divide_per_instance")) readBool(*x, &out->divide_per_instance);
  if (const Entry* x = f.get("action")) {
    loadScaleAction(*x, min, max, &out->action);
  } else {
    missing(e, "action", "such as {increase: 2}");
  }
  using Kind = ScaleAction::Kind;
  const Entry* dir = f.get("direction");
  switch (out->action.kind) {
    case Kind::kIncrease:
    case Kind::kIncreasePercent:
      out->direction = ScaleDirection::kOut;
      if (dir != nullptr) notUsed(f, "direction", "by increase actions (they scale out)");
      break;
    case Kind::kDecrease:
    case Kind::kDecreasePercent:
      out->direction = ScaleDirection::kIn;
      if (dir != nullptr) notUsed(f, "direction", "by decrease actions (they scale in)");
      break;
    case Kind::kSetCount:
      if (dir != nullptr) {
        readEnum(*dir, kDirections, &out->direction);
      } else if (out->op == CompareOp::kGt || out->op == CompareOp::kGe) {
        out->direction = ScaleDirection::kOut;
      } else if (out->op == CompareOp::kLt || out->op == CompareOp::kLe) {
        out->direction = ScaleDirection::kIn;
      } else if (op_ok) {
        missing(e, "direction", "a set rule with \"==\" or \"!=\" says whether it is out or in");
      }
      break;
  }
  if (const Entry* x = f.get("cooldown")) readDuration(*x, true, &out->cooldown);
}

void Loader::loadScaleAction(const Entry& e, uint32_t min, uint32_t max, ScaleAction* out) {
  Fields f = fieldsOf(e, {"increase", "decrease", "increase_percent", "decrease_percent", "set"});
  if (!f.ok) return;
  if (f.entries.size() != 1) {
    error(e.key_line, e.path,
          "expected exactly one of: " + enumChoices(kScaleActions) + " (got " +
              std::to_string(f.entries.size()) + ")");
    return;
  }
  const Entry& x = f.entries.front();
  ScaleAction::Kind kind = ScaleAction::Kind::kIncrease;
  for (const auto& k : kScaleActions) {
    if (k.name == x.key) kind = k.value;
  }
  uint32_t lo = 1;
  uint32_t hi = kMaxCapacity;
  if (kind == ScaleAction::Kind::kDecreasePercent) hi = 100;
  if (kind == ScaleAction::Kind::kSetCount) {
    lo = 0;
    // Within capacity; when capacity itself is wrong that error is reported already.
    if (min <= max) {
      lo = min;
      hi = max;
    }
  }
  uint32_t value = 0;
  if (!readUint32(x, lo, hi, &value)) return;
  out->kind = kind;
  out->value = value;
}

// Names, listen addresses and pool references across listeners: needs every listener and pool.
void Loader::loadDataplane(const Entry& e, DataplaneConfig* out) {
  out->enabled = true;
  out->where = where(e);
  Fields f = fieldsOf(e, {"eal_args", "main_lcore", "lcores", "ports", "local_addresses", "mbufs",
                          "queue_size", "flow_table_size", "nat_ports", "flow_timeouts"});
  if (!f.ok) return;
  if (const Entry* x = f.get("eal_args")) {
    for (const Entry& a : itemsOf(*x, "EAL arguments")) {
      std::string arg;
      if (readString(a, &arg)) out->eal_args.push_back(std::move(arg));
    }
  }
  if (const Entry* x = f.get("main_lcore")) readUint32(*x, 0, kMaxLcoreId, &out->main_lcore);
  if (const Entry* x = f.get("lcores")) {
    out->lcores.clear();
    std::vector<Entry> items = itemsOf(*x, "lcore ids");
    if (items.empty() || items.size() > kMaxDataplaneLcores) {
      error(*x, "expected 1.." + std::to_string(kMaxDataplaneLcores) + " lcore ids");
    }
    for (const Entry& item : items) {
      uint32_t id = 0;
      if (!readUint32(item, 0, kMaxLcoreId, &id)) continue;
      if (id == out->main_lcore) {
        error(item, "lcore " + std::to_string(id) + " is the main_lcore (the control thread)");
      } else if (std::find(out->lcores.begin(), out->lcores.end(), id) != out->lcores.end()) {
        error(item, "lcore " + std::to_string(id) + " is listed twice");
      } else {
        out->lcores.push_back(id);
      }
    }
  }
  if (const Entry* x = f.get("ports")) {
    std::vector<Entry> items = itemsOf(*x, "ports");
    if (items.size() > kMaxDataplanePorts) {
      error(*x, "at most " + std::to_string(kMaxDataplanePorts) + " ports");
    }
    for (const Entry& item : items) {
      DataplanePort port;
      loadDataplanePort(item, &port);
      out->ports.push_back(std::move(port));
    }
  }
  if (out->ports.empty()) {
    missing(e, "ports", "the data path needs at least one port (vdev string or PCI address)");
  }
  if (const Entry* x = f.get("local_addresses")) {
    for (const Entry& item : itemsOf(*x, "IPv4 addresses")) {
      std::string text;
      if (!readScalar(item, "an IPv4 address", &text)) continue;
      auto a = SocketAddress::parseIp(text);
      if (!a.isOk() || !a->isV4() || isWildcard(*a)) {
        error(item, "bad local address " + quoted(text) + ": expected a specific IPv4 address");
        continue;
      }
      out->local_addresses.push_back(*a);
    }
  }
  if (const Entry* x = f.get("mbufs")) readUint32(*x, 511, 16u << 20, &out->mbufs);
  if (const Entry* x = f.get("queue_size")) readUint32(*x, 64, 16384, &out->queue_size);
  if (const Entry* x = f.get("flow_table_size")) {
    readSize(*x, kMinFlowTableSize, kMaxFlowTableSize, &out->flow_table_size);
  }
  if (const Entry* x = f.get("nat_ports")) {
    std::string text;
    if (readScalar(*x, "a port range such as 1024-65535", &text)) {
      size_t dash = text.find('-');
      unsigned lo = 0, hi = 0;
      bool ok = dash != std::string::npos;
      if (ok) {
        auto r1 = std::from_chars(text.data(), text.data() + dash, lo);
        auto r2 = std::from_chars(text.data() + dash + 1, text.data() + text.size(), hi);
        ok = r1.ec == std::errc() && r1.ptr == text.data() + dash && r2.ec == std::errc() &&
             r2.ptr == text.data() + text.size() && lo >= 1 && lo <= hi && hi <= 65535;
      }
      if (!ok) {
        error(*x, "bad port range " + quoted(text) + ": expected LOW-HIGH within 1-65535");
      } else {
        out->nat_port_min = lo;
        out->nat_port_max = hi;
      }
    }
  }
  if (out->nat_port_max - out->nat_port_min + 1 < out->lcores.size() * 64) {
    error(e.key_line, childPath(e.path, "nat_ports"),
          "too few NAT ports: each lcore needs at least 64 of its own");
  }
  if (const Entry* x = f.get("flow_timeouts")) {
    Fields t = fieldsOf(*x, {"syn", "established", "closing", "udp"});
    if (const Entry* y = t.get("syn")) readDuration(*y, false, &out->syn_timeout);
    if (const Entry* y = t.get("established")) readDuration(*y, false, &out->established_timeout);
    if (const Entry* y = t.get("closing")) readDuration(*y, false, &out->closing_timeout);
    if (const Entry* y = t.get("udp")) readDuration(*y, false, &out->udp_timeout);
    for (const Entry& y : t.entries) {
      Duration d = y.key == "syn"           ? out->syn_timeout
                   : y.key == "established" ? out->established_timeout
                   : y.key == "closing"     ? out->closing_timeout
                                            : out->udp_timeout;
      if (d > std::chrono::hours(24 * 7)) error(y, "at most 7 days");
    }
  }
}

void Loader::loadDataplanePort(const Entry& e, DataplanePort* out) {
  out->where = where(e);
  Fields f = fieldsOf(e, {"device", "gateway_mac"});
  if (!f.ok) return;
  if (const Entry* x = f.get("device")) {
    if (readString(*x, &out->device) && (out->device.empty() || hasSpaceOrControl(out->device))) {
      error(*x, "bad device " + quoted(out->device) +
                    ": expected a vdev such as net_af_packet0,iface=eth1 or a PCI address");
    }
  } else {
    missing(e, "device", "a vdev string such as net_af_packet0,iface=eth1 or a PCI address");
  }
  if (const Entry* x = f.get("gateway_mac")) {
    std::string text;
    if (readScalar(*x, "a MAC address such as 02:00:00:00:00:01", &text) &&
        !parseMac(text, out->gateway_mac)) {
      error(*x, "bad MAC address " + quoted(text) + ": expected six hex bytes aa:bb:cc:dd:ee:ff");
    }
  } else {
    missing(e, "gateway_mac", "every packet leaves through the router at this MAC address");
  }
}

void Loader::checkListeners(const Config& config) {
  std::unordered_map<std::string, int> names;
  size_t l4_listeners = 0;
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const Listener& l = config.listeners[i];
    if (l.protocol != ListenerProtocol::kL4) continue;
    const std::string path = "listeners[" + std::to_string(i) + "]";
    if (++l4_listeners == kMaxL4Listeners + 1) {
      error(l.where.line, path, "at most " + std::to_string(kMaxL4Listeners) + " l4 listeners");
    }
    if (!config.dataplane.enabled) {
      error(l.where.line, path + ".protocol",
            "l4 listeners run on the DPDK data path: add a top-level \"dataplane:\" section");
    } else if (l.mode == L4Mode::kNat && config.dataplane.local_addresses.empty()) {
      error(l.where.line, path + ".mode",
            "nat mode needs dataplane.local_addresses (the SNAT source addresses)");
    }
    if (l.vip.valid() && !l.vip.isV4()) {
      error(listen_lines_[i], path + ".vip", "the DPDK data path serves IPv4 VIPs only");
    }
  }
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const Listener& l = config.listeners[i];
    const std::string path = "listeners[" + std::to_string(i) + "]";
    if (!l.name.empty()) {
      auto [it, inserted] = names.emplace(l.name, l.where.line);
      if (!inserted) {
        error(l.where.line, path + ".name",
              "duplicate listener name " + quoted(l.name) + " (first at line " +
                  std::to_string(it->second) + ")");
      }
    }
    if (l.listen.valid()) {
      if (l.listen == config.admin.listen) {
        error(listen_lines_[i], path + ".listen",
              "listen address " + l.listen.toString() + " is also admin.listen");
      }
      for (size_t j = 0; j < i && l.listen.port() != 0; ++j) {
        const SocketAddress& other = config.listeners[j].listen;
        if (!other.valid() || other.port() != l.listen.port() ||
            other.family() != l.listen.family()) {
          continue;
        }
        if (other == l.listen || isWildcard(other) || isWildcard(l.listen)) {
          error(listen_lines_[i], path + ".listen",
                "listen address " + l.listen.toString() + " conflicts with listeners[" +
                    std::to_string(j) + "] (" + other.toString() + ")");
          break;
        }
      }
    }
    if (l.vip.valid()) {
      for (size_t j = 0; j < i; ++j) {
        const Listener& other = config.listeners[j];
        if (other.vip.valid() && other.vip == l.vip && other.vip_proto == l.vip_proto) {
          error(listen_lines_[i], path + ".vip",
                "vip " + l.vip.toString() + "/" + std::string(enumName(kIpProtos, l.vip_proto)) +
                    " is also used by listeners[" + std::to_string(j) + "]");
          break;
        }
      }
    }
  }
  for (const PoolRef& ref : pool_refs_) {
    if (config.pools.count(ref.pool) == 0) {
      std::string known;
      for (const auto& [name, pool] : config.pools) {
        if (!known.empty()) known += ", ";
        known += name;
      }
      error(
          ref.line, ref.path,
          "unknown pool " + quoted(ref.pool) +
              (known.empty() ? std::string(" (no pools are defined)") : " (pools: " + known + ")"));
    }
  }
  // Only tcp listeners write a PROXY header; a pool that asks for one must not be reached any
  // other way, or its members would see connections without it.
  for (const auto& [pool, line] : proxy_protocol_lines_) {
    for (const Listener& l : config.listeners) {
      bool uses = l.protocol != ListenerProtocol::kHttp && l.pool == pool;
      for (const Route& r : l.routes) uses |= r.pool == pool;
      if (uses && l.protocol != ListenerProtocol::kTcp) {
        error(line, "pools." + pool + ".proxy_protocol",
              "only tcp listeners send a PROXY header, but " +
                  std::string(enumName(kProtocols, l.protocol)) + " listener " + quoted(l.name) +
                  " uses this pool");
        break;
      }
    }
  }
}

std::string readWholeFile(const std::string& path, std::string* error_text) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error_text = std::string("cannot open: ") + std::strerror(errno);
    return {};
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) *error_text = std::string("cannot read: ") + std::strerror(errno);
  return text;
}

}  // namespace

std::string ConfigError::toString() const {
  std::string out = file;
  if (line > 0) {
    out += ':';
    out += std::to_string(line);
  }
  out += ": ";
  if (!key.empty()) {
    out += key;
    out += ": ";
  }
  out += message;
  return out;
}

std::string LoadResult::errorText() const {
  std::string out;
  for (const auto& e : errors) {
    out += e.toString();
    out += '\n';
  }
  return out;
}

LoadResult loadConfigText(std::string_view text, const std::string& name) {
  LoadResult result;
  try {
    result.config.path = name;
    if (auto admin = SocketAddress::parse(kDefaultAdminListen); admin.isOk()) {
      result.config.admin.listen = *admin;
    }
    Loader loader(name);
    try {
      YAML::Node root = YAML::Load(std::string(text));
      loader.load(root, &result.config);
    } catch (const YAML::Exception& e) {
      int line = e.mark.is_null() ? 0 : e.mark.line + 1;
      loader.error(line, "", "YAML syntax error: " + e.msg);
    } catch (const std::exception& e) {
      loader.error(0, "", std::string("internal error while loading: ") + e.what());
    }
    result.errors = loader.takeErrors();
  } catch (...) {
    // Out of memory while collecting errors, or similar: report what we can without throwing.
    try {
      result.errors.clear();
      result.errors.push_back(ConfigError{name, 0, "", "internal error while loading"});
    } catch (...) {
    }
  }
  return result;
}

LoadResult loadConfigFile(const std::string& path) {
  LoadResult result;
  try {
    std::string error_text;
    std::string text = readWholeFile(path, &error_text);
    if (error_text.empty()) return loadConfigText(text, path);
    result.config.path = path;
    result.errors.push_back(ConfigError{path, 0, "", error_text});
  } catch (...) {
    try {
      result.errors.push_back(ConfigError{path, 0, "", "cannot read the file"});
    } catch (...) {
    }
  }
  return result;
}

const char* balanceName(BalanceAlgorithm b) {
  for (const auto& e : kBalances) {
    if (e.value == b) return e.name.data();  // string literals: NUL-terminated
  }
  return "unknown";
}

}  // namespace scalegate::config
