"""The admin API of the real scalegate binary: auth, errors, live membership, drain, and
membership that survives a restart (the state file)."""

import json
import os
import tempfile
import time
import unittest

from harness import (ProcessTestCase, Scalegate, admin_section, request, wait_until)

TOKEN = "s3cret-token"


class AdminApiTest(ProcessTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sgadmin-")
        self.b1 = self.start_backend("b1")
        self.b2 = self.start_backend("b2")
        self.admin, self.api = admin_section(self.dir, TOKEN)
        self.admin["max_request_body_bytes"] = "4k"
        self.admin["state_file"] = os.path.join(self.dir, "state.json")
        self.web_port = _free()
        self.config = {
            "log": {"level": "info"},
            "admin": self.admin,
            "listeners": [{"name": "web", "listen": "127.0.0.1:%d" % self.web_port,
                           "routes": [{"path_prefix": "/", "pool": "web"}]}],
            "pools": {"web": {"members": [{"id": "b1", "address": "127.0.0.1:%d" % self.b1.port}]}},
        }
        self.sg = self.start_proxy(self.config)

    def call(self, method, path, body=None, token=TOKEN, headers=None):
        hs = [("Connection", "close")]
        if token is not None:
            hs.append(("Authorization", "Bearer " + token))
        if body is not None:
            hs.append(("Content-Type", "application/json"))
        hs += headers or []
        return request(self.api.port, method, path, headers=hs,
                       body=body.encode() if isinstance(body, str) else body)

    def error_code(self, r):
        return json.loads(r.body)["error"]["code"]

    def test_auth_missing_or_wrong_token_is_401(self):
        r = self.call("GET", "/v1/pools", token=None)
        self.assertEqual(r.status, 401)
        self.assertEqual(self.error_code(r), 401)
        self.assertIn("Bearer", r.header("www-authenticate", ""))
        self.assertEqual(self.call("GET", "/v1/pools", token="wrong").status, 401)
        self.assertEqual(self.call("GET", "/v1/pools", token=TOKEN + "x").status, 401)
        self.assertEqual(self.call("GET", "/v1/pools").status, 200)
        # Probes of the process itself need no token.
        self.assertEqual(self.call("GET", "/healthz", token=None).status, 200)
        self.assertEqual(self.call("GET", "/readyz", token=None).status, 200)

    def test_errors(self):
        r = self.call("PUT", "/v1/pools/web/members/b2", body="{not json")
        self.assertEqual(r.status, 400)
        self.assertEqual(self.error_code(r), 400)
        self.assertEqual(self.call("GET", "/v1/pools/nope").status, 404)
        self.assertEqual(self.call("PUT", "/v1/pools/nope/members/x",
                                   body='{"address":"127.0.0.1:1"}').status, 404)
        big = json.dumps({"address": "127.0.0.1:%d" % self.b2.port, "zone": "x" * 8000})
        self.assertEqual(self.call("PUT", "/v1/pools/web/members/b2", body=big).status, 413)
        r = self.call("PATCH", "/v1/pools/web")
        self.assertEqual(r.status, 405)
        # Another member already has that address.
        r = self.call("PUT", "/v1/pools/web/members/dup",
                      body='{"address":"127.0.0.1:%d"}' % self.b1.port)
        self.assertEqual(r.status, 409)

    def served_by(self, n=40):
        seen = set()
        for _ in range(n):
            r = request(self.web_port, "GET", "/")
            self.assertEqual(r.status, 200)
            seen.add(r.backend)
        return seen

    def test_live_membership_drain_and_restart(self):
        self.assertEqual(self.served_by(), {"b1"})
        r = self.call("PUT", "/v1/pools/web/members/b2",
                      body='{"address":"127.0.0.1:%d","zone":"2","weight":1}' % self.b2.port)
        self.assertEqual(r.status, 201, r)
        wait_until(lambda: self.served_by(10) == {"b1", "b2"}, 5, what="b2 takes traffic")
        pool = self.api.get_json("/v1/pools/web")
        ids = [m["id"] for m in pool["members"]]
        self.assertEqual(ids, ["b1", "b2"])

        # Drain b1: no new requests reach it; it reports drained.
        r = self.call("POST", "/v1/pools/web/members/b1/drain", body='{"timeout":"5s"}')
        self.assertEqual(r.status, 202, r)
        wait_until(lambda: self.served_by(10) == {"b2"}, 5, what="b1 drained of new requests")

        def drained():
            m = [m for m in self.api.get_json("/v1/pools/web")["members"] if m["id"] == "b1"][0]
            return m["drain"] == "drained"
        wait_until(drained, 5, what="b1 reported drained")
        events = self.api.get_json("/v1/events")
        types = [e["type"] for e in events["events"]] if isinstance(events, dict) else \
            [e["type"] for e in events]
        self.assertIn("member_added", types)
        self.assertIn("drained", types)

        # Restart: the API-registered member and the drain survive.
        self.sg.stop()
        self.assertEqual(self.sg.returncode, 0)
        self.assertTrue(os.path.exists(self.admin["state_file"]))
        sg2 = Scalegate(self.config)
        self.addCleanup(sg2.kill)
        sg2.start()
        pool = self.api.get_json("/v1/pools/web")
        members = {m["id"]: m for m in pool["members"]}
        self.assertIn("b2", members)
        self.assertEqual(members["b2"]["address"], "127.0.0.1:%d" % self.b2.port)
        self.assertEqual(members["b1"]["drain"], "drained")
        seen = set()
        for _ in range(20):
            r = request(self.web_port, "GET", "/")
            self.assertEqual(r.status, 200)
            seen.add(r.backend)
        self.assertEqual(seen, {"b2"})

        # Removing a member takes effect at once and is persisted too.
        self.assertEqual(self.call("DELETE", "/v1/pools/web/members/b2").status, 200)
        self.assertEqual(self.call("DELETE", "/v1/pools/web/members/b2").status, 404)
        with open(self.admin["state_file"]) as f:
            self.assertNotIn('"b2"', f.read())


def _free():
    from harness import free_port
    return free_port()


if __name__ == "__main__":
    unittest.main()
