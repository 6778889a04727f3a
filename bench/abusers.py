#!/usr/bin/env python3
"""Abusive clients for bench/abuse_bench.sh (standard library only, one thread, bounded).

  abusers.py slowloris --port P --source 127.0.0.3 --conns 200 --duration 10
      keeps up to --conns connections open, each sending a request head one header line at a
      time (one line every --interval seconds) and never finishing it; reconnects when the
      server closes one.
  abusers.py connflood --port P --source 127.0.0.4 --conns 500 --duration 10
      opens connections as fast as it can and holds up to --conns of them, each after sending
      one complete request, never reading the response; reconnects when the server closes one.

A connection the server closes is replaced after --reconnect-delay seconds (default 1).
Prints one JSON line: {"mode", "opened", "closed_by_server", "connect_errors", "max_open"}.
Every connection binds to --source, so the server sees that address as the client IP.
"""

import argparse
import errno
import json
import selectors
import socket
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("slowloris", "connflood"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=1.0, help="slowloris: seconds per line")
    ap.add_argument("--max-opens", type=int, default=200000, help="bound on connections made")
    ap.add_argument("--reconnect-delay", type=float, default=1.0,
                    help="seconds before a connection the server closed is replaced")
    a = ap.parse_args()

    sel = selectors.DefaultSelector()
    conns = {}  # fd -> [sock, next_send_time, lines_sent]
    pending = []  # times at which closed connections may be replaced
    stats = {"mode": a.mode, "opened": 0, "closed_by_server": 0, "connect_errors": 0,
             "max_open": 0}
    end = time.monotonic() + a.duration
    request = b"GET / HTTP/1.1\r\nHost: abuser\r\n\r\n"

    def open_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setblocking(False)
        try:
            s.bind((a.source, 0))
            rc = s.connect_ex((a.host, a.port))
        except OSError:
            rc = errno.EADDRNOTAVAIL
        if rc not in (0, errno.EINPROGRESS):
            stats["connect_errors"] += 1
            s.close()
            return False
        stats["opened"] += 1
        conns[s.fileno()] = [s, time.monotonic(), 0]
        sel.register(s, selectors.EVENT_READ)
        return True

    def drop(fd, by_server):
        s = conns.pop(fd)[0]
        sel.unregister(s)
        s.close()
        if by_server:
            stats["closed_by_server"] += 1
            pending.append(time.monotonic() + a.reconnect_delay)

    while time.monotonic() < end:
        # Top up (bounded per pass so reads are not starved); a slot whose connection the
        # server closed waits --reconnect-delay first, as a bot holding N connections does.
        now = time.monotonic()
        pending[:] = [t for t in pending if t > now]
        for _ in range(64):
            if len(conns) + len(pending) >= a.conns or stats["opened"] >= a.max_opens:
                break
            if not open_one():
                break
        stats["max_open"] = max(stats["max_open"], len(conns))
        now = time.monotonic()
        for fd, st in list(conns.items()):
            s, due, sent = st
            if now < due:
                continue
            try:
                if a.mode == "slowloris":
                    line = b"GET / HTTP/1.1\r\n" if sent == 0 else b"X-Slow-%d: y\r\n" % sent
                    s.send(line)
                    st[1] = now + a.interval
                    st[2] = sent + 1
                elif sent == 0:
                    s.send(request)
                    st[1] = end  # hold it, never read
                    st[2] = 1
            except BlockingIOError:
                st[1] = now + 0.05  # still connecting
            except OSError:
                drop(fd, True)
        for key, _ in sel.select(timeout=0.01):
            fd = key.fd
            if fd not in conns:
                continue
            try:
                data = conns[fd][0].recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                drop(fd, True)
            elif a.mode == "slowloris":
                drop(fd, True)  # an answer to an unfinished head is a 408: the server gave up
    for fd in list(conns):
        drop(fd, False)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
