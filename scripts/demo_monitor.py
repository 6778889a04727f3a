#!/usr/bin/env python3
"""Live view of the demo (scripts/demo.sh): once a second, one line with the pool's capacity,
healthy members, requests/s and p99 from scalegate's admin API; every line also goes to a TSV
file, and at the end gnuplot draws the timeline (capacity, load and latency) as a PNG.

usage: demo_monitor.py ADMIN_URL TOKEN_FILE POOL SECONDS TSV PNG"""

import json
import subprocess
import sys
import time
import urllib.request


def get(url, token):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=2) as r:
        return json.loads(r.read().decode())


def main():
    admin, token_file, pool, seconds, tsv, png = sys.argv[1:7]
    token = open(token_file).read().strip()
    start = time.monotonic()
    rows = []
    with open(tsv, "w") as out:
        out.write("t\tdesired\tactive\thealthy\trps\tp99_ms\n")
        while time.monotonic() - start < float(seconds):
            t = time.monotonic() - start
            try:
                a = get("%s/v1/pools/%s/autoscale" % (admin, pool), token)
                cap, live = a["capacity"], a["live"]
                row = (t, cap["desired"], cap["active"], live["members_in_service"],
                       live["requests_per_second"], live["latency_p99_ms"])
                note = ""
                if a.get("scale_in"):
                    note = "  scaling in: draining " + ", ".join(a["scale_in"]["instances"])
                elif a.get("provisioning"):
                    note = "  scaling out: waiting for the scaler's instances"
                print("t=%5.0fs  capacity %d (active %d, healthy %d)  %7.0f req/s  p99 %7.2f ms%s"
                      % (row + (note,)), flush=True)
                rows.append(row)
                out.write("\t".join("%.3f" % v for v in row) + "\n")
                out.flush()
            except OSError as e:
                print("t=%5.0fs  admin API: %s" % (t, e), flush=True)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - start - t)))
    if not rows:
        return 1
    plot = """set terminal pngcairo size 1200,700 noenhanced
set output '%s'
set multiplot layout 3,1 title 'scalegate demo: autoscaling under a load ramp'
set grid
set key left top
set ylabel 'instances'
plot '%s' using 1:2 with steps lw 2 title 'desired', '' using 1:4 with steps lw 2 title 'healthy'
set ylabel 'requests/s'
plot '%s' using 1:5 with lines lw 2 title 'requests/s'
set ylabel 'p99 (ms)'
set xlabel 'seconds'
plot '%s' using 1:6 with lines lw 2 title 'p99 latency'
unset multiplot
""" % (png, tsv, tsv, tsv)
    try:
        subprocess.run(["gnuplot"], input=plot.replace("pngcairo", "png"), text=True, check=True)
        print("timeline: %s (data: %s)" % (png, tsv))
    except (OSError, subprocess.CalledProcessError) as e:
        print("gnuplot failed (%s); the data is in %s" % (e, tsv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
