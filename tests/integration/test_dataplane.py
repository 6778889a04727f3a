"""End to end through the DPDK L4 path (issue 5): real HTTP members in network namespaces,
scalegate's DPDK port on a veth (net_af_packet), nat mode.

Topology (every name carries this run's id; all of it is removed in tearDown, even on failure):

  client ns                lb ns (kernel = the router; scalegate runs here)         member ns x3
  c0 10.77.1.2 ──veth── c1 10.77.1.1     dp1 10.77.0.1 ──veth── dp0 (DPDK,         m0 10.77.1k.2
                                          gateway_mac)            net_af_packet) ┐  sgbackend :80
                        mk 10.77.1k.1 ──veth──────────────────────────────────────┼── (k = 1..3)
  route: 10.77.9.10 (VIP) via 10.77.0.2 (scalegate's local/SNAT address, answered by DPDK ARP)

  client -> router -> dp1 -> [DPDK: VIP, Maglev, DNAT+SNAT] -> dp1 -> router -> member
  member -> router -> dp1 (to 10.77.0.2) -> [DPDK: reverse NAT] -> dp1 -> router -> client

Health probes run from scalegate's control thread through the kernel (lb ns -> mk -> member).
Needs root (namespaces, veth, af_packet) and ethtool.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import BIN_DIR, SCALEGATE, SGBACKEND, wait_until

VIP = "10.77.9.10"
LOCAL = "10.77.0.2"
DENIED = "10.77.1.3"  # a second client address, refused by the VIP's access list
GW_MAC = "02:77:00:00:00:01"
MEMBERS = ["m1", "m2", "m3"]


def run(*args, check=True):
    r = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, timeout=30)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(args), r.returncode,
                                                       r.stdout.decode(errors="replace")))
    return r.stdout.decode(errors="replace")


class DataplaneTopology(unittest.TestCase):
    """The namespaces, veths and scalegate of the diagram above; no tests of its own, so
    test_pktgen.py reuses it. CLIENT_ADDR None leaves the client's veth without an address
    (a DPDK generator owns the client addresses there)."""

    CLIENT_ADDR = "10.77.1.2/24"

    def setUp(self):
        self.id = "%x" % (os.getpid() % 0xfffff)
        self.lb = "sgl-" + self.id
        self.client = "sgc-" + self.id
        self.members = {m: "sg%s-%s" % (m, self.id) for m in MEMBERS}
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="sg-dataplane-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.addCleanup(self.teardown_namespaces)
        self.addCleanup(self.stop_processes)
        self.build_topology()

    # ---- topology -------------------------------------------------------------------------
    def ns(self, ns, *args, check=True):
        return run("ip", "netns", "exec", ns, *args, check=check)

    def build_topology(self):
        for ns in [self.lb, self.client] + list(self.members.values()):
            run("ip", "netns", "add", ns)
            self.ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            self.ns(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            self.ns(ns, "ip", "link", "set", "lo", "up")
        lb = self.lb
        # The router's side of scalegate's port, and the port itself.
        self.ns(lb, "ip", "link", "add", "dp0", "type", "veth", "peer", "name", "dp1")
        self.ns(lb, "ip", "link", "set", "dp1", "address", GW_MAC)
        self.ns(lb, "ip", "addr", "add", "10.77.0.1/24", "dev", "dp1")
        self.veth(lb, "c1", "10.77.1.1/24", self.client, "c0", self.CLIENT_ADDR, "10.77.1.1")
        for k, m in enumerate(MEMBERS, start=1):
            self.veth(lb, "m%d" % k, "10.77.%d.1/24" % (10 + k), self.members[m], "m0",
                      "10.77.%d.2/24" % (10 + k), "10.77.%d.1" % (10 + k))
        for dev in ("dp0", "dp1"):
            self.ns(lb, "ip", "link", "set", dev, "up")
            self.ns(lb, "ethtool", "-K", dev, "tx", "off")
        self.ns(lb, "ip", "route", "add", VIP + "/32", "via", LOCAL, "dev", "dp1")
        self.ns(lb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for key in ("all", "default", "dp1", "dp0"):
            self.ns(lb, "sysctl", "-qw", "net.ipv4.conf.%s.rp_filter=0" % key)
            self.ns(lb, "sysctl", "-qw", "net.ipv4.conf.%s.send_redirects=0" % key)
        # dp0 belongs to DPDK: the kernel must not route what arrives on it.
        self.ns(lb, "sysctl", "-qw", "net.ipv4.conf.dp0.forwarding=0")

    def veth(self, ns_a, dev_a, addr_a, ns_b, dev_b, addr_b, gw_b):
        self.ns(ns_a, "ip", "link", "add", dev_a, "type", "veth", "peer", "name", dev_b,
                "netns", ns_b)
        self.ns(ns_a, "ip", "addr", "add", addr_a, "dev", dev_a)
        if addr_b:
            self.ns(ns_b, "ip", "addr", "add", addr_b, "dev", dev_b)
        for ns, dev in ((ns_a, dev_a), (ns_b, dev_b)):
            self.ns(ns, "ip", "link", "set", dev, "up")
            # af_packet hands over whatever the kernel sends: make it finish its checksums.
            self.ns(ns, "ethtool", "-K", dev, "tx", "off")
        if addr_b:
            self.ns(ns_b, "ip", "route", "add", "default", "via", gw_b)

    def teardown_namespaces(self):
        for prefix in ("sg-e2e-", "sgpg-"):
            shutil.rmtree("/var/run/dpdk/" + prefix + self.id, ignore_errors=True)
        for ns in [self.lb, self.client] + list(self.members.values()):
            subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)

    def stop_processes(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def spawn(self, ns, args, name, stdin=None, stdout=None):
        with open(os.path.join(self.dir, name + ".log"), "wb") as log:
            p = subprocess.Popen(["ip", "netns", "exec", ns] + args,
                                 stdin=stdin or subprocess.DEVNULL, stdout=stdout or log,
                                 stderr=log)
        self.procs.append(p)
        return p

    def log(self, name):
        with open(os.path.join(self.dir, name + ".log"), "rb") as f:
            return f.read().decode(errors="replace")

    # ---- scalegate --------------------------------------------------------------------------
    def start_members(self):
        self.member_procs = {}
        for k, m in enumerate(MEMBERS, start=1):
            self.member_procs[m] = self.spawn(
                self.members[m], [SGBACKEND, "--listen", "10.77.%d.2:80" % (10 + k), "--id", m,
                                  "--health-path", "/health", "--quiet"], m)
        # Members start healthy (initial_state), so traffic may come before the probes ran:
        # wait until each one answers inside its own namespace.
        for k, m in enumerate(MEMBERS, start=1):
            def listening(m=m, k=k):
                if self.member_procs[m].poll() is not None:
                    raise AssertionError("sgbackend %s exited:\n%s" % (m, self.log(m)))
                out = self.ns(self.members[m], "curl", "-s", "-m", "1",
                              "http://10.77.%d.2:80/health" % (10 + k), check=False)
                return bool(out)
            wait_until(listening, 15, interval=0.05, what="sgbackend %s listening" % m)

    def start_scalegate(self, listeners=None, pools=None):
        members = ", ".join('{ id: %s, address: "10.77.%d.2:80" }' % (m, 10 + k)
                            for k, m in enumerate(MEMBERS, start=1))
        listeners = listeners or f"""
  - {{ name: vip, protocol: l4, vip: "{VIP}:80/tcp", pool: web, mode: nat }}"""
        pools = pools or f"""
  web:
    health: {{ type: http, path: /health, interval: 1s, timeout: 800ms, rise: 1, fall: 3 }}
    members: [ {members} ]"""
        config = f"""
admin: {{ listen: 127.0.0.1:9900 }}
dataplane:
  eal_args: [--no-huge, -m, "256", --no-pci, --file-prefix, "sg-e2e-{self.id}"]
  main_lcore: 0
  lcores: [1]
  ports: [ {{ device: "net_af_packet0,iface=dp0", gateway_mac: "{GW_MAC}" }} ]
  local_addresses: [{LOCAL}]
  mbufs: 4095
  flow_table_size: 64k
  flow_timeouts: {{ established: 60s }}
listeners:{listeners}
pools:{pools}
"""
        path = os.path.join(self.dir, "scalegate.yaml")
        with open(path, "w") as f:
            f.write(config)
        self.sg = self.spawn(self.lb, [SCALEGATE, "--config", path, "--workers", "1"],
                             "scalegate")

        def started():
            if self.sg.poll() is not None:
                raise AssertionError("scalegate exited %s:\n%s" % (self.sg.returncode,
                                                                   self.log("scalegate")))
            return re.search(r"\bstarted\b", self.log("scalegate")) is not None
        wait_until(started, 30, what="scalegate started")

    def metrics(self):
        return self.ns(self.lb, "curl", "-s", "-m", "5", "http://127.0.0.1:9900/metrics",
                       check=False)

    def metric(self, text, name, **labels):
        total = 0.0
        found = False
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all('%s="%s"' % (k, v) in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
                found = True
        return total if found else None

    def wait_health(self, member, healthy):
        def ok():
            v = self.metric(self.metrics(), "scalegate_member_healthy", member=member)
            return v == (1.0 if healthy else 0.0)
        wait_until(ok, 30, interval=0.1, what="%s healthy=%s" % (member, healthy))

    def curl(self):
        out = self.ns(self.client, "curl", "-s", "-m", "5", "-D", "-", "-o", "/dev/null",
                      "http://%s/" % VIP, check=False)
        m = re.search(r"^x-backend:\s*(\S+)", out, re.M | re.I)
        status = re.search(r"^HTTP/1.1 (\d+)", out, re.M)
        return (int(status.group(1)) if status else None), (m.group(1) if m else None)


@unittest.skipUnless(os.geteuid() == 0, "needs root: network namespaces and af_packet")
class DataplaneEndToEndTest(DataplaneTopology):
    def test_vip_spreads_and_failover_moves_only_the_failed_members_flows(self):
        self.start_members()
        # A second client address that the VIP's access list refuses.
        self.ns(self.client, "ip", "addr", "add", DENIED + "/24", "dev", "c0")
        self.start_scalegate(listeners=f"""
  - {{ name: vip, protocol: l4, vip: "{VIP}:80/tcp", pool: web, mode: nat,
      access: {{ deny: [ {DENIED}/32 ] }} }}""")
        for m in MEMBERS:
            self.wait_health(m, True)

        # curl to the VIP works, and new connections spread over all three members.
        seen = {}
        for _ in range(30):
            status, backend = self.curl()
            self.assertEqual(status, 200, self.log("scalegate"))
            seen[backend] = seen.get(backend, 0) + 1
        self.assertEqual(set(seen), set(MEMBERS), seen)

        # Long-lived flows from fixed source ports.
        client = self.spawn(self.client, ["python3", os.path.join(os.path.dirname(
            os.path.abspath(__file__)), "dataplane_client.py"), VIP, "80", "10.77.1.2"],
            "client", stdin=subprocess.PIPE, stdout=subprocess.PIPE)

        def ask(cmd):
            client.stdin.write((json.dumps(cmd) + "\n").encode())
            client.stdin.flush()
            line = client.stdout.readline()
            self.assertTrue(line, "client helper died: " + self.log("client"))
            return {int(k): v for k, v in json.loads(line).items()}

        ports = list(range(31000, 31030))
        first = ask({"op": "open", "ports": ports})
        self.assertEqual(set(first.values()), set(MEMBERS), first)
        on_m2 = [p for p, b in first.items() if b == "m2"]
        healthy = {p: b for p, b in first.items() if b != "m2"}
        flows_m2 = self.metric(self.metrics(), "scalegate_dataplane_member_flows_total",
                               member="m2")
        self.assertGreaterEqual(flows_m2, len(on_m2))

        # m2 fails: its process dies and its probes fail.
        self.member_procs["m2"].kill()
        self.member_procs["m2"].wait()
        self.wait_health("m2", False)

        # Flows on healthy members are unaffected: same connection, same member.
        again = ask({"op": "again"})
        for p, b in healthy.items():
            self.assertEqual(again[p], b, "flow from port %d moved off a healthy member" % p)
        for p in on_m2:
            self.assertTrue(again[p].startswith("error:"), again[p])

        # m2's flows move: the same 5-tuples now reach healthy members.
        moved = ask({"op": "reconnect", "ports": on_m2})
        for p in on_m2:
            self.assertIn(moved[p], ("m1", "m3"), "port %d: %s" % (p, moved[p]))
        for _ in range(10):
            status, backend = self.curl()
            self.assertEqual(status, 200)
            self.assertIn(backend, ("m1", "m3"))
        text = self.metrics()
        self.assertEqual(self.metric(text, "scalegate_dataplane_member_flows_total", member="m2"),
                         flows_m2)
        self.assertGreater(self.metric(text, "scalegate_dataplane_vip_packets_total",
                                       listener="vip"), 0)
        self.assertGreater(self.metric(text, "scalegate_dataplane_replies_total", type="arp"), 0)
        # The same client namespace from the denied address: dropped before any flow exists.
        self.assertEqual(self.metric(text, "scalegate_dataplane_vip_access_denied_total",
                                     listener="vip"), 0)
        out = self.ns(self.client, "curl", "-s", "-m", "1", "--interface", DENIED, "-o",
                      "/dev/null", "-w", "%{http_code}", "http://%s/" % VIP, check=False)
        self.assertEqual(out.strip(), "000", out)
        text = self.metrics()
        self.assertGreater(self.metric(text, "scalegate_dataplane_vip_access_denied_total",
                                       listener="vip"), 0)
        self.assertGreater(self.metric(text, "scalegate_dataplane_drops_total",
                                       reason="access_denied"), 0)
        self.assertGreater(self.metric(text, "scalegate_dataplane_port_packets_total",
                                       direction="tx"), 0)

        if os.environ.get("SG_DATAPLANE_SHOW"):
            print(text)
        client.stdin.close()
        client.wait(timeout=10)
        self.sg.send_signal(signal.SIGTERM)
        self.assertEqual(self.sg.wait(timeout=30), 0, self.log("scalegate"))


if __name__ == "__main__":
    unittest.main()
