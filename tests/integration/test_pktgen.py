"""sgpktgen on a real DPDK port (issue 5): the generator runs in the client namespace on
net_af_packet, scalegate's DPDK path (nat) in the lb namespace, and a TCP+UDP echo member
(echo_member.py, replies prefixed with the member's name) in each of 3 member namespaces.
Topology: test_dataplane.py's, except that the client's veth has no kernel address: sgpktgen
owns the client addresses 10.77.1.100-103 (answers ARP for them) and resolves the router
10.77.1.1 by ARP.

  sgpktgen (c0, DPDK) -> router -> scalegate dp0 (VIP 10.77.9.10:7 tcp+udp, Maglev, NAT)
     -> router -> member k (echo) -> ... -> sgpktgen: counts which member answered each flow

PktgenTapTest: sgpktgen on net_tap straight to the kernel of its namespace (TCP and UDP echo,
and sgbackend over HTTP keep-alive, on the tap's address), without scalegate: another port
type, and real kernel TCP end to end.

Needs root (namespaces, veth, af_packet, tap) and ethtool. Namespaces go even when a test
fails.
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import BIN_DIR, SGBACKEND, wait_until
from test_dataplane import MEMBERS, VIP, DataplaneTopology, run

SGPKTGEN = os.path.join(BIN_DIR, "bench", "sgpktgen")
ECHO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo_member.py")
FLOWS = 300


@unittest.skipUnless(os.geteuid() == 0, "needs root: network namespaces and af_packet")
class PktgenTest(DataplaneTopology):
    CLIENT_ADDR = None

    def setUp(self):
        super().setUp()
        for k, m in enumerate(MEMBERS, start=1):
            self.spawn(self.members[m], ["python3", ECHO, m, "10.77.%d.2" % (10 + k), "7"], m)
        # Members start out healthy (initial_state), so wait until they listen.
        for m in MEMBERS:
            wait_until(lambda m=m: "echo member" in self.log(m), 30, what=m + " listening")
        members = ", ".join('{ id: %s, address: "10.77.%d.2:7" }' % (m, 10 + k)
                            for k, m in enumerate(MEMBERS, start=1))
        self.start_scalegate(listeners=f"""
  - {{ name: echo-tcp, protocol: l4, vip: "{VIP}:7/tcp", pool: echo, mode: nat }}
  - {{ name: echo-udp, protocol: l4, vip: "{VIP}:7/udp", pool: echo, mode: nat }}""",
                             pools=f"""
  echo:
    health: {{ type: tcp, interval: 1s, timeout: 800ms, rise: 1, fall: 3 }}
    members: [ {members} ]""")
        for m in MEMBERS:
            self.wait_health(m, True)

    def pktgen(self, *args, src_port=20000):
        """Runs sgpktgen in the client namespace; returns its JSON summary."""
        cmd = ["ip", "netns", "exec", self.client, SGPKTGEN, "--port",
               "net_af_packet0,iface=c0", "--eal=--no-huge -m 256 --file-prefix sgpg-" + self.id,
               "--vip", VIP, "--vip-port", "7", "--src-ip", "10.77.1.100", "--src-ips", "4",
               "--src-port", str(src_port), "--gateway", "10.77.1.1", "--flows", str(FLOWS),
               "--json"] + list(args)
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=60)
        out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        lines = [line for line in out.splitlines() if line.startswith("{")]
        self.assertTrue(lines, "sgpktgen printed no summary (exit %d):\n%s\n%s\nscalegate:\n%s"
                        % (r.returncode, out, err, self.log("scalegate")))
        summary = json.loads(lines[-1])
        summary["exit"] = r.returncode
        summary["stderr"] = err
        return summary

    def assert_spread(self, s):
        self.assertEqual(s["flows_answered"], FLOWS, s)
        self.assertEqual(s["flows_identified"], FLOWS, s)
        self.assertEqual(set(s["members"]), set(MEMBERS), s)
        for m, n in s["members"].items():
            # Maglev over 3 equal members: 100 flows each expected; 20-46% leaves room for
            # the hash's spread over 300 flows and still fails if one member is missed.
            self.assertGreaterEqual(n, 0.20 * FLOWS, (m, s["members"]))
            self.assertLessEqual(n, 0.46 * FLOWS, (m, s["members"]))

    def test_udp_tcp_and_rate_through_the_vip(self):
        # UDP: three datagrams per flow (one lost datagram must not fail the test), every
        # flow answered, spread over the three members.
        udp = self.pktgen("--proto", "udp", "--payload", "32", "--count", str(3 * FLOWS),
                          "--rate", "5000", "--wait", "5")
        self.assertEqual(udp["exit"], 0, udp)
        self.assertEqual(udp["sent"], 3 * FLOWS, udp)
        self.assertGreaterEqual(udp["replies"], 0.95 * udp["sent"], udp)
        self.assert_spread(udp)
        self.assertGreater(udp["arp_replies"], 0, udp)  # the router asked for our addresses

        # Rate control: 2000 pps for 2 s is 4000 datagrams (+-5%).
        rate = self.pktgen("--proto", "udp", "--payload", "32", "--rate", "2000", "--duration",
                           "2", "--wait", "3", src_port=21000)
        self.assertGreaterEqual(rate["sent"], 3800, rate)
        self.assertLessEqual(rate["sent"], 4200, rate)
        self.assertGreaterEqual(rate["generation_s"], 1.99, rate)
        self.assertGreaterEqual(rate["replies"], 0.95 * rate["sent"], rate)
        self.assert_spread(rate)

        # TCP: handshake, two data segments each echoed, FIN; all 300 connections closed.
        tcp = self.pktgen("--proto", "tcp", "--payload", "64", "--segments", "2", "--rate",
                          "5000", "--wait", "5", src_port=22000)
        self.assertEqual(tcp["exit"], 0, tcp)
        self.assertEqual(tcp["tcp"]["opened"], FLOWS, tcp)
        self.assertEqual(tcp["tcp"]["closed"], FLOWS, tcp)
        self.assertEqual(tcp["tcp"]["reset"], 0, tcp)
        self.assertEqual(tcp["sent"], 2 * FLOWS, tcp)
        self.assert_spread(tcp)

        # scalegate saw the flows on both VIPs.
        text = self.metrics()
        self.assertGreaterEqual(self.metric(text, "scalegate_dataplane_vip_flows_total",
                                            listener="echo-udp"), 2 * FLOWS)
        self.assertGreaterEqual(self.metric(text, "scalegate_dataplane_vip_flows_total",
                                            listener="echo-tcp"), FLOWS)
        # What sgpktgen read from the replies is what scalegate's Maglev decided: per member,
        # the flows scalegate created equal the flows sgpktgen saw that member answer.
        for m in MEMBERS:
            created = self.metric(text, "scalegate_dataplane_member_flows_total", member=m)
            seen = sum(s["members"].get(m, 0) for s in (udp, rate, tcp))
            self.assertEqual(created, seen, (m, udp["members"], rate["members"], tcp["members"]))
        if os.environ.get("SG_PKTGEN_SHOW"):
            for s in (udp, rate, tcp):
                s.pop("stderr")
                print(json.dumps(s))


@unittest.skipUnless(os.geteuid() == 0 and os.path.exists("/dev/net/tun"),
                     "needs root and /dev/net/tun")
class PktgenTapTest(unittest.TestCase):
    def setUp(self):
        self.id = "%x" % (os.getpid() % 0xfffff)
        self.ns = "sgt-" + self.id
        self.dir = tempfile.mkdtemp(prefix="sg-pktgen-tap-")
        self.procs = []
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.addCleanup(self.cleanup)
        run("ip", "netns", "add", self.ns)
        self.nsrun("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        self.nsrun("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        self.nsrun("ip", "link", "set", "lo", "up")
        log = open(os.path.join(self.dir, "echo.log"), "wb")
        self.addCleanup(log.close)
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "python3", ECHO, "kernel", "0.0.0.0", "7"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log))
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.ns, SGBACKEND, "--listen", "0.0.0.0:8080", "--id",
             "tapweb", "--quiet"], stdin=subprocess.DEVNULL, stdout=log, stderr=log))

    def nsrun(self, *args, check=True):
        return run("ip", "netns", "exec", self.ns, *args, check=check)

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree("/var/run/dpdk/sgpt-" + self.id, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", self.ns], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def pktgen(self, *args, vip_port=7):
        out = open(os.path.join(self.dir, "out"), "w+b")
        self.addCleanup(out.close)
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, SGPKTGEN, "--port", "net_tap0,iface=sgt0",
             "--eal=--no-huge -m 256 --file-prefix sgpt-" + self.id, "--vip", "10.78.0.1",
             "--vip-port", str(vip_port), "--src-ip", "10.78.0.100", "--src-ips", "2", "--flows", "50",
             "--arp-timeout", "30", "--json"] + list(args),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(p)
        # The tap exists once sgpktgen's port is up; the kernel side gets the VIP address then
        # (sgpktgen keeps asking ARP for it until --arp-timeout).
        def tap_up():
            if p.poll() is not None:
                out.seek(0)
                raise AssertionError("sgpktgen exited: " + out.read().decode(errors="replace"))
            return "sgt0" in self.nsrun("ip", "-o", "link", "show", check=False)
        wait_until(tap_up, 30, interval=0.05, what="tap sgt0")
        self.nsrun("ip", "addr", "add", "10.78.0.1/24", "dev", "sgt0")
        self.nsrun("ip", "link", "set", "sgt0", "up")
        self.nsrun("ethtool", "-K", "sgt0", "tx", "off", check=False)
        p.wait(timeout=60)
        # The kernel removes the tap a little after sgpktgen exits: wait, so the next run
        # cannot mistake this one's vanishing tap for its own.
        wait_until(lambda: "sgt0" not in self.nsrun("ip", "-o", "link", "show", check=False),
                   10, interval=0.05, what="tap sgt0 gone")
        out.seek(0)
        text = out.read().decode(errors="replace")
        lines = [line for line in text.splitlines() if line.startswith("{")]
        self.assertTrue(lines, "no summary (exit %d): %s" % (p.returncode, text))
        summary = json.loads(lines[-1])
        self.assertEqual(p.returncode, 0, text)
        return summary

    def test_tcp_and_udp_to_the_kernel_over_net_tap(self):
        tcp = self.pktgen("--proto", "tcp", "--segments", "3", "--payload", "100")
        self.assertEqual(tcp["tcp"]["closed"], 50, tcp)
        self.assertEqual(tcp["sent"], 150, tcp)
        self.assertEqual(tcp["replies"] >= 150, True, tcp)
        self.assertEqual(tcp["members"], {"kernel": 50}, tcp)
        udp = self.pktgen("--proto", "udp", "--count", "200", "--payload", "10")
        self.assertEqual(udp["sent"], 200, udp)
        self.assertEqual(udp["flows_answered"], 50, udp)
        self.assertEqual(udp["members"], {"kernel": 50}, udp)
        # HTTP keep-alive to sgbackend: the member id comes from a response header.
        http = self.pktgen("--proto", "tcp", "--segments", "2", "--request",
                           "GET / HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n", "--id-after",
                           "X-Backend:", vip_port=8080)
        self.assertEqual(http["tcp"]["closed"], 50, http)
        self.assertEqual(http["sent"], 100, http)
        self.assertEqual(http["members"], {"tapweb": 50}, http)


if __name__ == "__main__":
    unittest.main()
