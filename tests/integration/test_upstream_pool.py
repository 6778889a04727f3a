"""The per-worker upstream connection pool: keep-alive reuse and the pool's idle_timeout."""

import tempfile
import time
import unittest

from harness import ProcessTestCase, admin_section, free_port, request, wait_until


class UpstreamPoolTest(ProcessTestCase):
    def test_idle_pooled_connections_close_after_idle_timeout(self):
        b = self.start_backend("b1")
        admin_cfg, admin = admin_section(tempfile.mkdtemp(prefix="sgpool-"))
        port = free_port()
        self.start_proxy({
            "admin": admin_cfg,
            "listeners": [{"name": "web", "listen": "127.0.0.1:%d" % port,
                           "routes": [{"path_prefix": "/", "pool": "web"}]}],
            "pools": {"web": {"upstream": {"idle_timeout": "1s"},
                              "members": [{"id": "b1", "address": b.address}]}},
        })

        def active():
            return admin.metrics().value("scalegate_member_connections_active",
                                         pool="web", member="b1")

        for _ in range(5):  # sequential requests share one pooled connection
            self.assertEqual(request(port, "GET", "/").status, 200)
        self.assertEqual(admin.metrics().value("scalegate_member_connections_total",
                                               pool="web", member="b1"), 1.0)
        self.assertEqual(active(), 1.0)
        t0 = time.monotonic()
        # Closed by the once-a-second sweep after 1 s idle: within 2.5 s.
        wait_until(lambda: active() == 0.0, 4.0, interval=0.05, what="idle connection closed")
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertEqual(request(port, "GET", "/").status, 200)
        self.assertEqual(admin.metrics().value("scalegate_member_connections_total",
                                               pool="web", member="b1"), 2.0)


if __name__ == "__main__":
    unittest.main()
