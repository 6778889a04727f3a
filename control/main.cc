// scalegate: the load balancer process. See README.md and ../shared/DESIGN.md.

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "config/loader.h"
#include "control/app.h"

int main(int argc, char** argv) {
  CLI::App cli{
      "scalegate: a load balancer for pools of VM instances (HTTP/1.1 reverse proxy, health "
      "probes, autoscaling webhooks).\n\nSignals: SIGHUP reloads the config (a bad file keeps "
      "the running one), SIGTERM/SIGINT drain in-flight requests and exit 0.",
      "scalegate"};
  std::string config_path;
  std::string check_path;
  int workers = 0;
  bool version = false;
  cli.add_option("-c,--config", config_path, "YAML configuration file to run")
      ->check(CLI::ExistingFile);
  cli.add_option("--check", check_path,
                 "validate FILE, print every error as file:line: key: problem, and exit "
                 "(0 = valid)");
  cli.add_option("-w,--workers", workers,
                 "L7 worker threads (default: `workers` from the config, else one per core)")
      ->check(CLI::Range(1, 256));
  cli.add_flag("-V,--version", version, "print the version and exit");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);
  }
  if (version) {
    std::printf("scalegate %s\n", SG_VERSION);
    return 0;
  }
  if (!check_path.empty()) {
    scalegate::config::LoadResult r = scalegate::config::loadConfigFile(check_path);
    if (!r.ok()) {
      std::fprintf(stderr, "%s", r.errorText().c_str());
      std::fprintf(stderr, "%s: %zu error(s)\n", check_path.c_str(), r.errors.size());
      return 1;
    }
    std::printf("%s: OK (%zu listeners, %zu pools)\n", check_path.c_str(),
                r.config.listeners.size(), r.config.pools.size());
    return 0;
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "scalegate: --config FILE is required (or --check FILE); see --help\n");
    return 2;
  }
  scalegate::control::Options opts;
  opts.config_path = config_path;
  opts.workers = workers;
  scalegate::control::App app(opts);
  return app.run();
}
