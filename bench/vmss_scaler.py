#!/usr/bin/env python3
"""An example scaler for a real Azure VM Scale Set: receives scalegate's signed webhooks
(scalegate format) and maps each event onto the Azure CLI command a VMSS takes. README.md
"Driving a real cloud scale set" explains the mapping.

    scale_out      az vmss scale            --new-capacity NEW
    scale_in       az vmss delete-instances --instance-ids IDS   (already drained by scalegate)
    repair         replace: az vmss delete-instances + az vmss scale back to the capacity
                   restart: az vmss restart --instance-ids ID
                   reimage: az vmss reimage --instance-ids ID
    upgrade_batch  az vmss update (the model's image version, once per version)
                   + az vmss update-instances --instance-ids IDS

Member ids are the VMSS instance ids (your instances register themselves with
PUT /v1/pools/{pool}/members/{instance id}, e.g. from cloud-init). By default the commands are
only printed (--dry-run is on); pass --execute to run them. Python 3 standard library only.

usage: vmss_scaler.py --secret-file F --resource-group RG --vmss NAME [--listen 127.0.0.1:9800]
                      [--execute]
"""

import argparse
import base64
import hashlib
import hmac
import json
import shlex
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_S = 300
seen_ids = {}  # webhook-id -> time: deliveries are retried with the same id
seen_lock = threading.Lock()
upgraded_versions = set()


def verify(secret, headers, body):
    """Standard Webhooks v1: v1,base64(HMAC-SHA256(key, id.timestamp.body))."""
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    msg_id, ts, sigs = (headers.get("webhook-id"), headers.get("webhook-timestamp"),
                        headers.get("webhook-signature"))
    if not (msg_id and ts and sigs):
        return False, "missing webhook headers"
    try:
        if abs(time.time() - int(ts)) > TOLERANCE_S:
            return False, "stale timestamp"
    except ValueError:
        return False, "bad timestamp"
    mac = hmac.new(key, ("%s.%s." % (msg_id, ts)).encode() + body, hashlib.sha256).digest()
    want = "v1," + base64.b64encode(mac).decode()
    if not any(hmac.compare_digest(want, s) for s in sigs.split(" ")):
        return False, "bad signature"
    return True, ""


def commands(event, rg, vmss):
    """The az commands for one scalegate event."""
    t, d = event["type"], event["data"]
    base = ["az", "vmss"]
    target = ["--resource-group", rg, "--name", vmss]
    ids = [i for i in d.get("instances", [])]
    if t == "scale_out":
        # A zone-spanning VMSS spreads new instances over its zones itself (zone balance);
        # d["zones"] says where scalegate expects them.
        return [base + ["scale"] + target + ["--new-capacity", str(d["new_capacity"])]]
    if t == "scale_in":
        return [base + ["delete-instances"] + target + ["--instance-ids"] + ids]
    if t == "repair":
        action = d["repair"]["action"]
        if action == "replace":
            return [base + ["delete-instances"] + target + ["--instance-ids"] + ids,
                    base + ["scale"] + target + ["--new-capacity", str(d["new_capacity"])]]
        verb = "restart" if action == "restart" else "reimage"
        return [base + [verb] + target + ["--instance-ids"] + ids]
    if t == "upgrade_batch":
        version = d["upgrade"]["version"]
        out = []
        if version not in upgraded_versions:
            upgraded_versions.add(version)
            out.append(base + ["update"] + target + [
                "--set", "virtualMachineProfile.storageProfile.imageReference.version=" + version])
        out.append(base + ["update-instances"] + target + ["--instance-ids"] + ids)
        return out
    return []


def make_handler(secret, rg, vmss, execute):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            ok, why = verify(secret, headers, body)
            if not ok:
                self.send_response(401)
                self.end_headers()
                self.wfile.write(why.encode())
                return
            msg_id = headers["webhook-id"]
            with seen_lock:
                duplicate = msg_id in seen_ids
                seen_ids[msg_id] = time.time()
            self.send_response(200 if duplicate else 202)
            self.end_headers()
            if duplicate:
                return
            event = json.loads(body)
            # Answer first, work after: scalegate's try has a timeout.
            threading.Thread(target=run, args=(event, rg, vmss, execute), daemon=True).start()

        def log_message(self, fmt, *args):
            pass

    return Handler


def run(event, rg, vmss, execute):
    for cmd in commands(event, rg, vmss):
        print(("run: " if execute else "would run: ") + " ".join(shlex.quote(c) for c in cmd),
              flush=True)
        if execute:
            subprocess.run(cmd, check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:9800")
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--resource-group", required=True)
    ap.add_argument("--vmss", required=True)
    ap.add_argument("--execute", action="store_true", help="run the az commands (default: print)")
    a = ap.parse_args()
    secret = open(a.secret_file).read().strip()
    host, port = a.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), make_handler(secret, a.resource_group,
                                                                 a.vmss, a.execute))
    print("vmss_scaler listening on %s (%s)" % (a.listen, "executing" if a.execute else "dry run"),
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
