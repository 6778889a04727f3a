"""scalegate's /metrics read by a real Prometheus server: exactly N requests through scalegate
become exactly N in `sum(scalegate_http_requests_total)`, and `promtool check metrics` finds
nothing to complain about in a scrape.

Needs Debian's `prometheus` package (scripts/packages.txt, group test): /usr/bin/prometheus and
/usr/bin/promtool. Without them the tests fail (they do not skip): a CI image without the
package must be noticed.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from harness import (Client, HarnessError, ProcessTestCase, _kill, admin_section, free_port, request,
                     wait_until)

PROMETHEUS = os.environ.get("SG_PROMETHEUS", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("SG_PROMTOOL", "/usr/bin/promtool")
MISSING = ("%s not found: install Debian's `prometheus` package (listed in scripts/packages.txt, "
           "group test): apt-get install prometheus")
N_REQUESTS = 137


def require(binary):
    if not os.access(binary, os.X_OK):
        raise AssertionError(MISSING % binary)


class PrometheusServer:
    """A Prometheus on 127.0.0.1:<free port> scraping `target` (host:port) every second with
    the bearer token in `token_file`; TSDB in a temp dir."""

    def __init__(self, target, token_file, directory):
        self.dir = directory
        self.port = free_port()
        self.proc = None
        self.config_path = os.path.join(directory, "prometheus.yml")
        self.log_path = os.path.join(directory, "prometheus.log")
        with open(self.config_path, "w") as f:
            f.write("""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: scalegate
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials_file: %s
    static_configs:
      - targets: ["%s"]
""" % (token_file, target))
        self._log = None

    def start(self):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + self.config_path,
             "--storage.tsdb.path=" + os.path.join(self.dir, "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def ready():
            if self.proc.poll() is not None:
                raise HarnessError("prometheus exited with %s:\n%s" %
                                   (self.proc.returncode, self.log()))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port,
                                            timeout=1) as r:
                    return r.status == 200
            except (OSError, urllib.error.URLError):
                return False
        wait_until(ready, 30, interval=0.1, what="prometheus /-/ready")
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def api(self, path, **params):
        url = "http://127.0.0.1:%d%s" % (self.port, path)
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as r:
            doc = json.loads(r.read().decode("utf-8"))
        if doc.get("status") != "success":
            raise HarnessError("prometheus %s: %r" % (url, doc))
        return doc["data"]

    def query_scalar(self, expr):
        """The value of an instant query with one result; None when it has none."""
        result = self.api("/api/v1/query", query=expr)["result"]
        if not result:
            return None
        if len(result) != 1:
            raise HarnessError("%s: %d series: %r" % (expr, len(result), result))
        return float(result[0]["value"][1])

    def target_health(self):
        """[(health, lastError)] of the active scrape targets."""
        return [(t.get("health"), t.get("lastError"))
                for t in self.api("/api/v1/targets")["activeTargets"]]

    def stop(self):
        if self.proc is not None:
            _kill(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None


class PrometheusTest(ProcessTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sgprom-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.backend = self.start_backend("b1")
        self.admin_cfg, self.admin = admin_section(self.dir)
        self.port = free_port()
        self.start_proxy({
            "log": {"level": "warn"},
            "admin": self.admin_cfg,
            "listeners": [{"name": "web", "protocol": "http",
                           "listen": "127.0.0.1:%d" % self.port,
                           "routes": [{"path_prefix": "/", "pool": "web"}]}],
            "pools": {"web": {
                "health": {"type": "http", "path": "/health", "interval": "1s",
                           "timeout": "500ms"},
                "members": [{"id": "b1", "address": self.backend.address}]}},
        })

    def test_prometheus_counts_exactly_the_requests_sent(self):
        require(PROMETHEUS)
        prom = PrometheusServer(self.admin_cfg["listen"], self.admin_cfg["token_file"], self.dir)
        self.addCleanup(prom.stop)
        prom.start()

        # First a successful scrape, so a failure to scrape is reported as such.
        def scraped():
            health = prom.target_health()
            return health and all(h == "up" for h, _ in health)
        try:
            wait_until(scraped, 20, interval=0.2, what="prometheus to scrape scalegate")
        except HarnessError:
            self.fail("prometheus cannot scrape scalegate's /metrics: %r\n%s" %
                      (prom.target_health(), prom.log()))

        # Exactly N requests: some on fresh connections, the rest on one keep-alive connection.
        fresh = N_REQUESTS // 2
        for i in range(fresh):
            r = request(self.port, "GET", "/n/%d" % i)
            self.assertEqual(r.status, 200, r)
        with Client(self.port) as c:
            for i in range(fresh, N_REQUESTS):
                r = c.request("GET", "/n/%d" % i)
                self.assertEqual(r.status, 200, r)
        expr = "sum(scalegate_http_requests_total)"

        def counted():
            v = prom.query_scalar(expr)
            if v is not None and v > N_REQUESTS:
                raise HarnessError("%s = %s, more than the %d requests sent" %
                                   (expr, v, N_REQUESTS))
            return v == N_REQUESTS
        try:
            wait_until(counted, 30, interval=0.25, what="%s == %d" % (expr, N_REQUESTS))
        except HarnessError as e:
            self.fail("%s; last value %r; scalegate says %r" %
                      (e, prom.query_scalar(expr),
                       self.admin.metrics().sum("scalegate_http_requests_total")))
        self.assertEqual(prom.query_scalar(expr), N_REQUESTS)

    def test_promtool_check_metrics_is_clean(self):
        require(PROMTOOL)
        request(self.port, "GET", "/")  # so per-request families have series
        text = self.admin.metrics_text()
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode("utf-8"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual((p.returncode, out), (0, ""),
                         "promtool check metrics complained:\n%s" % out)


if __name__ == "__main__":
    unittest.main()
