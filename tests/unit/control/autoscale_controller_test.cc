// AutoscaleController across restarts: what <state>.autoscale.json and the outbox hold when
// the process dies at a given point, and what the next process makes of it. A "restart" is a
// new PoolRegistry and AutoscaleController over the same files (the previous ones are dropped
// without any flushing, as SIGKILL would); time is a ManualClock; webhooks go to a real HTTP
// server on loopback in the same event loop.

#include "control/autoscale_controller.h"
#include "tests/unit/control/test_support.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <set>
#include <thread>

#include "config/loader.h"
#include "control/state_file.h"

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
using Ids = std::vector<std::string>;

constexpr char kSecret[] = "whsec_YXV0b3NjYWxlLXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=";

using test_support::readFile;
using test_support::writeFile;

// The scaler: answers 202 to every webhook and remembers (id, event).
class Scaler {
 public:
  explicit Scaler(event_base* base) : http_(evhttp_new(base)) {
    port_ = test_support::bindLoopback(http_);
    evhttp_set_gencb(http_, &Scaler::onRequest, this);
  }
  ~Scaler() { evhttp_free(http_); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hooks"; }

  struct Hook {
    std::string id;
    Json body;
  };
  std::vector<Hook> received;

 private:
  static void onRequest(evhttp_request* req, void* arg) {
    auto* self = static_cast<Scaler*>(arg);
    const char* id = evhttp_find_header(evhttp_request_get_input_headers(req), "webhook-id");
    evbuffer* in = evhttp_request_get_input_buffer(req);
    std::string body(evbuffer_get_length(in), '\0');
    evbuffer_copyout(in, body.data(), body.size());
    self->received.push_back({id == nullptr ? "" : id, Json::parse(body, nullptr, false)});
    evhttp_send_reply(req, 202, "Accepted", nullptr);
  }
  evhttp* http_;
  uint16_t port_ = 0;
};

// A ManualClock that also lets the test look at the files each time the code under test
// reads the wall time: the sender reads it while queueing a delivery (before the outbox is
// written), which is where a crash would show what was written ahead of the queueing.
class ProbedClock final : public Clock {
 public:
  MonoTime now() const override { return inner_.now(); }
  WallTime wallNow() const override {
    if (probe) probe();
    return inner_.wallNow();
  }
  void advance(Duration d) { inner_.advance(d); }
  std::function<void()> probe;

 private:
  ManualClock inner_;
};

class AutoscaleRestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("sg_autoscale_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    state_ = dir_ + "/web.state.json";
    writeFile(dir_ + "/scaler.secret", std::string(kSecret) + "\n");
    base_ = event_base_new();
    scaler_ = std::make_unique<Scaler>(base_);
    const std::string yaml = R"(listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web:
    drain_timeout: 1s
    health: { type: http, path: /health, interval: 1s, timeout: 500ms, rise: 1, fall: 1 }
    members:
      - { id: vm-0, address: 10.0.0.1:80, version: v1 }
      - { id: vm-1, address: 10.0.0.2:80, version: v1 }
      - { id: vm-2, address: 10.0.0.3:80, version: v1 }
    autoscale:
      evaluation_interval: 1h
      capacity: { min: 1, max: 5, default: 1 }
      scaler: { url: ")" + scaler_->url() +
                             R"(", secret_file: ")" + dir_ + R"(/scaler.secret",
                max_backoff: 1s, timeout: 2s }
)";
    config::LoadResult r = config::loadConfigText(yaml, "test.yaml");
    ASSERT_TRUE(r.ok()) << r.errorText();
    cfg_ = std::make_shared<const config::Config>(std::move(r.config));
  }
  void TearDown() override {
    ctl_.reset();
    reg_.reset();
    scaler_.reset();
    event_base_free(base_);
    std::filesystem::remove_all(dir_);
  }

  // A process start: the registry from the state file and the config, then the controller.
  Status startProcess() {
    ctl_.reset();
    reg_ = std::make_unique<PoolRegistry>(1, clock_);
    SG_RETURN_IF_ERROR(reg_->loadState(state_));
    reg_->applyConfig(cfg_);
    ctl_ = std::make_unique<AutoscaleController>(base_, *reg_, clock_, outboxPathFor(state_),
                                                 autoscaleStatePathFor(state_),
                                                 [this] { (void)reg_->saveState(state_); });
    SG_RETURN_IF_ERROR(ctl_->applyConfig(*cfg_));
    return ctl_->start();
  }
  // SIGKILL: nothing more is written; the registry's file is as App last saved it.
  void kill() {
    ASSERT_TRUE(reg_->saveState(state_).isOk());
    ctl_.reset();
    reg_.reset();
  }

  void setHealth(const std::string& id, HealthState h) {
    reg_->findPool("web")->find(id)->health = h;
  }
  void allHealthy() {
    for (const char* id : {"vm-0", "vm-1", "vm-2"}) setHealth(id, HealthState::kHealthy);
  }
  // What the scaler does with an upgrade_batch: the instance comes back at the version.
  void upgradeInstance(const std::string& id, const std::string& version) {
    const MemberRecord* m = reg_->findPool("web")->find(id);
    ASSERT_NE(m, nullptr);
    MemberSpec s;
    s.address = m->spec.address;
    s.version = version;
    Result<bool> r = reg_->upsertMember("web", id, s);
    ASSERT_TRUE(r.isOk()) << r.status().message();
    setHealth(id, HealthState::kHealthy);
  }

  // Runs the event loop until `n` webhooks have arrived (bounded).
  void deliver(size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (scaler_->received.size() < n && std::chrono::steady_clock::now() < deadline) {
      event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK);
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_GE(scaler_->received.size(), n);
    // Let the sender see the answer (on_delivered).
    for (int i = 0; i < 50; ++i) {
      event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK);
      std::this_thread::sleep_for(1ms);
    }
  }

  // One second of the control loop.
  void second() {
    clock_.advance(1s);
    reg_->tickDrains(clock_.now());
    ctl_->tick();
  }

  Json upgradeStatus() {
    auto r = ctl_->poolAction("web", "upgrade", "GET", "");
    EXPECT_TRUE(r.has_value());
    return r->body;
  }
  Json savedPool() { return Json::parse(readFile(autoscaleStatePathFor(state_)))["pools"]["web"]; }
  Ids outboxIds() {
    Ids ids;
    Json j = Json::parse(readFile(outboxPathFor(state_)), nullptr, false);
    if (j.is_object()) {
      for (const Json& d : j["deliveries"]) ids.push_back(d["id"].get<std::string>());
    }
    return ids;
  }
  bool hasEvent(const std::string& type) {
    for (const Event& e : reg_->events()) {
      if (e.type == type) return true;
    }
    return false;
  }

  // What the files held at each wall-clock read during `fn`: (autoscale state, outbox ids).
  std::vector<std::pair<std::string, Ids>> filesDuring(const std::function<void()>& fn) {
    std::vector<std::pair<std::string, Ids>> seen;
    clock_.probe = [&] { seen.emplace_back(readFile(autoscaleStatePathFor(state_)), outboxIds()); };
    fn();
    clock_.probe = nullptr;
    return seen;
  }
  // The autoscale state file as it was at a moment when `id` was written in it (at `key` of
  // the pool) and the outbox did not hold it yet: what a crash right then leaves. "" if never.
  static std::string writtenAhead(const std::vector<std::pair<std::string, Ids>>& seen,
                                  const Json::json_pointer& key, const std::string& id) {
    for (const auto& [text, outbox] : seen) {
      Json j = Json::parse(text, nullptr, false);
      if (j.is_discarded() || !j.contains(key) || j[key] != id) continue;
      if (std::find(outbox.begin(), outbox.end(), id) == outbox.end()) return text;
    }
    return "";
  }

  // Seconds until the batch in flight's upgrade_batch is queued (drained, then sent).
  void untilBatchSent() {
    for (int i = 0; i < 5 && !upgradeStatus().contains("webhook_id"); ++i) second();
    ASSERT_TRUE(upgradeStatus().contains("webhook_id")) << upgradeStatus().dump();
  }

  // Drives the upgrade until it ends, playing the scaler for every upgrade_batch.
  void finishUpgrade(size_t already_received) {
    size_t handled = already_received;
    for (int i = 0;
         i < 60 && upgradeStatus()["state"] != "completed" && upgradeStatus()["state"] != "aborted";
         ++i) {
      second();
      deliver(scaler_->received.size());
      for (; handled < scaler_->received.size(); ++handled) {
        const Json& b = scaler_->received[handled].body;
        for (const Json& id : b["data"]["instances"]) upgradeInstance(id, "v2");
      }
      if (upgradeStatus()["state"] == "sending") deliver(handled + 1);
      for (; handled < scaler_->received.size(); ++handled) {
        const Json& b = scaler_->received[handled].body;
        for (const Json& id : b["data"]["instances"]) upgradeInstance(id, "v2");
      }
    }
  }

  // Every upgrade_batch the scaler got: instance -> distinct webhook ids naming it.
  std::map<std::string, std::set<std::string>> batchIdsByInstance() {
    std::map<std::string, std::set<std::string>> out;
    for (const auto& h : scaler_->received) {
      if (h.body["type"] != "upgrade_batch") continue;
      for (const Json& id : h.body["data"]["instances"]) out[id].insert(h.id);
    }
    return out;
  }

  std::string dir_, state_;
  ProbedClock clock_;
  event_base* base_ = nullptr;
  std::unique_ptr<Scaler> scaler_;
  std::shared_ptr<const config::Config> cfg_;
  std::unique_ptr<PoolRegistry> reg_;
  std::unique_ptr<AutoscaleController> ctl_;
};

TEST_F(AutoscaleRestartTest, UpgradeResumesWithTheBatchWebhookPendingInTheOutbox) {
  ASSERT_TRUE(startProcess().isOk());
  allHealthy();
  auto r = ctl_->poolAction("web", "upgrade", "POST",
                            R"({"version": "v2", "batch": 1, "pause": "0s",
                                "max_unhealthy": 0, "max_unhealthy_upgraded": 0})");
  ASSERT_EQ(r->code, 202) << r->error;
  // Batch 1 (vm-0) all the way through.
  untilBatchSent();
  ASSERT_NO_FATAL_FAILURE(deliver(1));
  upgradeInstance("vm-0", "v2");
  for (int i = 0; i < 5 && upgradeStatus()["batch"] != 1; ++i) second();
  // Batch 2 (vm-1): drained, its upgrade_batch queued, then SIGKILL before it is delivered.
  auto seen = filesDuring([&] { untilBatchSent(); });
  ASSERT_EQ(upgradeStatus()["state"], "sending");
  ASSERT_EQ(upgradeStatus()["current_batch"], Json({"vm-1"}));
  const std::string id = upgradeStatus()["webhook_id"];
  Json saved = savedPool()["upgrade"];
  EXPECT_EQ(saved["machine"]["state"], "sending");
  EXPECT_EQ(saved["webhook_id"], id);
  EXPECT_EQ(outboxIds(), Ids{id});
  // Written ahead: the batch's phase and id were on disk before the outbox had the delivery.
  const std::string ahead = writtenAhead(seen, "/pools/web/upgrade/webhook_id"_json_pointer, id);
  ASSERT_NE(ahead, "");
  EXPECT_EQ(Json::parse(ahead)["pools"]["web"]["upgrade"]["machine"]["state"], "sending");
  kill();

  ASSERT_TRUE(startProcess().isOk());
  EXPECT_TRUE(hasEvent("upgrade_resumed"));
  Json st = upgradeStatus();
  EXPECT_EQ(st["state"], "sending");
  EXPECT_EQ(st["resumed"], true);
  EXPECT_EQ(st["version"], "v2");
  EXPECT_EQ(st["batch"], 1);
  EXPECT_EQ(st["batches"], 3);
  EXPECT_EQ(st["instances_upgraded"], 1);
  // Every member is unprobed after the restart: not a reason to abort (vm-0 is upgraded and
  // max_unhealthy_upgraded is 0).
  second();
  EXPECT_EQ(upgradeStatus()["state"], "sending");
  ASSERT_NO_FATAL_FAILURE(deliver(2));
  EXPECT_EQ(scaler_->received[1].id, id);  // the outbox's delivery, same id
  EXPECT_EQ(upgradeStatus()["state"], "waiting_healthy");
  second();
  EXPECT_EQ(upgradeStatus()["state"], "waiting_healthy");
  allHealthy();
  // The uniform pool takes vm-1 at v2 again after the restart: the upgrade's version is back.
  upgradeInstance("vm-1", "v2");
  finishUpgrade(2);
  st = upgradeStatus();
  EXPECT_EQ(st["state"], "completed") << st.dump();
  EXPECT_EQ(st["instances_upgraded"], 3);
  EXPECT_EQ(batchIdsByInstance().size(), 3u);
  for (const auto& [instance, ids] : batchIdsByInstance()) {
    EXPECT_EQ(ids.size(), 1u) << instance;  // one webhook id per batch
  }
  EXPECT_EQ(scaler_->received.size(), 3u);
  for (const MemberRecord& m : reg_->findPool("web")->members) EXPECT_EQ(m.spec.version, "v2");

  // A completed upgrade stays completed after another restart; nothing is sent again.
  kill();
  ASSERT_TRUE(startProcess().isOk());
  allHealthy();
  second();
  second();
  EXPECT_EQ(upgradeStatus()["state"], "completed");
  EXPECT_EQ(upgradeStatus()["instances_upgraded"], 3);
  EXPECT_EQ(scaler_->received.size(), 3u);
}

TEST_F(AutoscaleRestartTest, UpgradeBatchDeliveredButNotRecordedIsResentWithItsId) {
  ASSERT_TRUE(startProcess().isOk());
  allHealthy();
  auto r =
      ctl_->poolAction("web", "upgrade", "POST", R"({"version": "v2", "batch": 2, "pause": "0s"})");
  ASSERT_EQ(r->code, 202) << r->error;
  untilBatchSent();
  ASSERT_EQ(upgradeStatus()["state"], "sending");
  const std::string before_delivery = readFile(autoscaleStatePathFor(state_));
  const std::string id = upgradeStatus()["webhook_id"];
  ASSERT_NO_FATAL_FAILURE(deliver(1));
  EXPECT_EQ(outboxIds(), Ids{});
  EXPECT_EQ(savedPool()["upgrade"]["machine"]["state"], "waiting_healthy");
  // The crash came between the delivery (outbox emptied) and the autoscale state's write.
  kill();
  writeFile(autoscaleStatePathFor(state_), before_delivery);
  ASSERT_TRUE(startProcess().isOk());
  EXPECT_EQ(outboxIds(), Ids{id});  // queued again, under the same id
  ASSERT_NO_FATAL_FAILURE(deliver(2));
  EXPECT_EQ(scaler_->received[1].id, id);
  EXPECT_EQ(scaler_->received[1].body, scaler_->received[0].body);  // byte-identical event
  EXPECT_EQ(upgradeStatus()["state"], "waiting_healthy");
  allHealthy();
  for (const Json& m : scaler_->received[0].body["data"]["instances"]) upgradeInstance(m, "v2");
  finishUpgrade(2);
  EXPECT_EQ(upgradeStatus()["state"], "completed");
  // Batches vm-0+vm-1 then vm-2: each instance named under exactly one id.
  for (const auto& [instance, ids] : batchIdsByInstance()) EXPECT_EQ(ids.size(), 1u) << instance;
  EXPECT_EQ(batchIdsByInstance().size(), 3u);
}

TEST_F(AutoscaleRestartTest, RestoredUpgradeStillHonoursItsHealthTimeout) {
  ASSERT_TRUE(startProcess().isOk());
  allHealthy();
  auto r = ctl_->poolAction("web", "upgrade", "POST",
                            R"({"version": "v2", "batch": 1, "health_timeout": "30s"})");
  ASSERT_EQ(r->code, 202) << r->error;
  untilBatchSent();
  ASSERT_NO_FATAL_FAILURE(deliver(1));
  ASSERT_EQ(upgradeStatus()["state"], "waiting_healthy");
  clock_.advance(20s);
  kill();
  clock_.advance(5s);  // down for 5 s
  ASSERT_TRUE(startProcess().isOk());
  allHealthy();
  setHealth("vm-0", HealthState::kUnhealthy);  // never comes back
  second();
  EXPECT_EQ(upgradeStatus()["state"], "waiting_healthy");
  for (int i = 0; i < 6; ++i) second();
  Json st = upgradeStatus();
  EXPECT_EQ(st["state"], "aborted");
  EXPECT_NE(st["reason"].get<std::string>().find("not healthy at version v2 within 30s"),
            std::string::npos)
      << st.dump();
  // The batch in flight went back to traffic, and an aborted upgrade is not resumed.
  EXPECT_EQ(reg_->findPool("web")->find("vm-0")->drain, DrainState::kNone);
  kill();
  ASSERT_TRUE(startProcess().isOk());
  EXPECT_EQ(upgradeStatus()["state"], "aborted");
  EXPECT_FALSE(hasEvent("upgrade_resumed"));
  EXPECT_EQ(scaler_->received.size(), 1u);
}

TEST_F(AutoscaleRestartTest, ScaleInWebhookHasOneIdWhereverTheCrashFalls) {
  ASSERT_TRUE(startProcess().isOk());
  allHealthy();
  second();
  auto r = ctl_->poolAction("web", "scale", "POST", R"({"capacity": 2})");
  ASSERT_EQ(r->code, 202) << r->error;
  const Json draining = Json::parse(readFile(autoscaleStatePathFor(state_)));
  ASSERT_TRUE(draining["pools"]["web"].contains("scale_in"));
  EXPECT_FALSE(draining["pools"]["web"].contains("scale_in_webhook_id"));
  auto seen = filesDuring([&] { second(); });  // vm-2 drained: the scale_in goes out
  ASSERT_EQ(outboxIds().size(), 1u);
  const std::string id = outboxIds()[0];
  EXPECT_FALSE(savedPool().contains("scale_in"));  // done, written after the queueing
  kill();

  // What the disk held after the id was written and before the outbox had the event: a crash
  // right there.
  const std::string written = writtenAhead(seen, "/pools/web/scale_in_webhook_id"_json_pointer, id);
  ASSERT_NE(written, "");
  EXPECT_EQ(Json::parse(written)["pools"]["web"]["scale_in"]["data"]["instances"], Json({"vm-2"}));
  writeFile(autoscaleStatePathFor(state_), written);
  const std::string queued_outbox = readFile(outboxPathFor(state_));
  std::filesystem::remove(outboxPathFor(state_));
  ASSERT_TRUE(startProcess().isOk());
  EXPECT_EQ(outboxIds(), Ids{id});  // queued now, under the written id
  EXPECT_FALSE(savedPool().contains("scale_in"));
  ASSERT_NO_FATAL_FAILURE(deliver(1));
  EXPECT_EQ(scaler_->received[0].id, id);
  EXPECT_EQ(scaler_->received[0].body["type"], "scale_in");
  EXPECT_EQ(scaler_->received[0].body["data"]["instances"], Json({"vm-2"}));
  kill();

  // And after a crash between the outbox having it and writing that the scale-in is done:
  // the outbox's delivery is the only one.
  writeFile(autoscaleStatePathFor(state_), written);
  writeFile(outboxPathFor(state_), queued_outbox);
  ASSERT_TRUE(startProcess().isOk());
  EXPECT_EQ(outboxIds(), Ids{id});
  EXPECT_FALSE(savedPool().contains("scale_in"));
  ASSERT_NO_FATAL_FAILURE(deliver(2));
  for (int i = 0; i < 3; ++i) second();
  EXPECT_EQ(scaler_->received.size(), 2u);
  EXPECT_EQ(scaler_->received[1].id, id);
  EXPECT_EQ(outboxIds(), Ids{});
}

TEST_F(AutoscaleRestartTest, StateTextIsWhatTheFileHoldsAndLoadsAgain) {
  ASSERT_TRUE(startProcess().isOk());
  allHealthy();
  second();
  auto r = ctl_->poolAction("web", "scale", "POST", R"({"capacity": 2})");
  ASSERT_EQ(r->code, 202) << r->error;
  const std::string text = readFile(autoscaleStatePathFor(state_));
  ASSERT_TRUE(Json::parse(text)["pools"]["web"].contains("scale_in"));
  EXPECT_EQ(ctl_->stateText(), text);

  // A controller without files, as at a start, fed the same text.
  PoolRegistry reg(1, clock_);
  reg.applyConfig(cfg_);
  AutoscaleController other(base_, reg, clock_, "", "", nullptr);
  ASSERT_TRUE(other.applyConfig(*cfg_).isOk());
  Status st = other.loadStateText("copied.autoscale.json", text);
  ASSERT_TRUE(st.isOk()) << st.message();
  EXPECT_EQ(other.stateText(), text);

  AutoscaleController bad(base_, reg, clock_, "", "", nullptr);
  ASSERT_TRUE(bad.applyConfig(*cfg_).isOk());
  st = bad.loadStateText("copied.autoscale.json", text.substr(0, text.size() / 2));
  ASSERT_FALSE(st.isOk());
  EXPECT_EQ(st.message().rfind("autoscale state copied.autoscale.json: ", 0), 0u) << st.message();
}

// Found by tests/fuzz autoscale_state: "desired": 1e20 was converted to uint32_t with undefined
// behaviour, a deadline in milliseconds far from now overflowed the nanosecond clocks, and a
// float version was converted to int the same way. Each is a clear error now.
TEST_F(AutoscaleRestartTest, NumbersOutOfRangeAreAClearError) {
  PoolRegistry reg(1, clock_);
  reg.applyConfig(cfg_);
  for (const char* text :
       {R"({"version": 1, "pools": {"web": {"desired": 1e20}}})",
        R"({"version": 1, "pools": {"web": {"desired": -1}}})",
        R"({"version": 1, "pools": {"web": {"desired": 2,
            "provisioning_until_unix_ms": 9223372036854775807}}})",
        R"({"version": 1, "pools": {"web": {"desired": 2, "last_scaled_unix_ms": 1.5e300}}})",
        R"({"version": 1e100, "pools": {}})"}) {
    AutoscaleController ctl(base_, reg, clock_, "", "", nullptr);
    ASSERT_TRUE(ctl.applyConfig(*cfg_).isOk());
    Status st = ctl.loadStateText("x.autoscale.json", text);
    ASSERT_FALSE(st.isOk()) << text;
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(st.message().rfind("autoscale state x.autoscale.json: ", 0), 0u) << st.message();
  }
}

TEST_F(AutoscaleRestartTest, CorruptUpgradeStateIsAClearStartError) {
  writeFile(autoscaleStatePathFor(state_),
            R"({"version": 1, "pools": {"web": {"desired": 3,
                "upgrade": {"machine": {"state": "sending", "version": "v2"},
                            "drained_batch": []}}}})");
  Status st = startProcess();
  ASSERT_FALSE(st.isOk());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(autoscaleStatePathFor(state_)), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("web: upgrade: "), std::string::npos) << st.message();
  writeFile(autoscaleStatePathFor(state_),
            "{\"version\": 1, \"pools\": {\"web\": {\"desired\": 3, "
            "\"upgrade\": 7}}}");
  st = startProcess();
  ASSERT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("web: "), std::string::npos) << st.message();
}

}  // namespace
TEST_F(AutoscaleRestartTest, UpgradeWithoutAUsableScalerAbortsInsteadOfWaiting) {
  // The scaler's secret cannot be read: the pool has no webhook target.
  std::filesystem::remove(dir_ + "/scaler.secret");
  reg_ = std::make_unique<PoolRegistry>(1, clock_);
  ASSERT_TRUE(reg_->loadState(state_).isOk());
  reg_->applyConfig(cfg_);
  ctl_ = std::make_unique<AutoscaleController>(base_, *reg_, clock_, outboxPathFor(state_),
                                               autoscaleStatePathFor(state_),
                                               [this] { (void)reg_->saveState(state_); });
  Status st = ctl_->applyConfig(*cfg_);
  ASSERT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("secret_file"), std::string::npos) << st.message();
  ASSERT_TRUE(ctl_->start().isOk());
  allHealthy();
  auto r = ctl_->poolAction("web", "upgrade", "POST", R"({"version": "v2", "batch": 1})");
  ASSERT_EQ(r->code, 202) << r->error;
  // The failed batch is aborted at once, and the next step reports it (event, undrain).
  for (int i = 0; i < 5 && !hasEvent("upgrade_aborted"); ++i) second();
  Json u = upgradeStatus();
  EXPECT_EQ(u["state"], "aborted") << u.dump();
  EXPECT_NE(u.dump().find("no usable scaler"), std::string::npos) << u.dump();
  EXPECT_TRUE(hasEvent("upgrade_aborted"));
  // The batch's drained member is back in rotation.
  EXPECT_EQ(reg_->findPool("web")->find("vm-0")->drain, DrainState::kNone);
  EXPECT_TRUE(scaler_->received.empty());
}

}  // namespace scalegate::control
