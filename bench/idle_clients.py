#!/usr/bin/env python3
"""Opens N keep-alive HTTP/1.1 connections to one address, sends one GET on each, reads each
full response (Content-Length or chunked), and then holds every connection open and idle.

Prints one line when all are idle (or the time limit ran out):
    idle <ok> failed <failed> elapsed <seconds>
and then keeps the connections until stdin reaches EOF or --hold seconds pass, whichever is
first. Used by bench/idle_conns.sh; bounded in time at every step. Loopback only.
"""

import argparse
import errno
import selectors
import socket
import sys
import time

CONNECTING, SENDING, READING, IDLE, FAILED = range(5)


class Client:
    __slots__ = ("sock", "state", "out", "buf", "need")

    def __init__(self, sock, request):
        self.sock = sock
        self.state = CONNECTING
        self.out = request
        self.buf = bytearray()
        self.need = None  # bytes of body still expected once the head is parsed


def response_complete(c):
    """True when c.buf holds one whole response; raises ValueError on junk."""
    head_end = c.buf.find(b"\r\n\r\n")
    if head_end < 0:
        if len(c.buf) > 65536:
            raise ValueError("response head too large")
        return False
    head = bytes(c.buf[:head_end]).decode("latin-1").split("\r\n")
    if not head[0].startswith("HTTP/1.") or len(head[0]) < 12:
        raise ValueError("bad status line %r" % head[0])
    status = int(head[0][9:12])
    length = None
    chunked = False
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if status < 200 or status >= 400:
        raise ValueError("status %d" % status)
    body = c.buf[head_end + 4:]
    if chunked:
        return bytes(body).endswith(b"0\r\n\r\n")
    if length is None:
        raise ValueError("no Content-Length on a keep-alive response")
    return len(body) >= length


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--path", default="/")
    ap.add_argument("--in-flight", type=int, default=256,
                    help="connections being set up at once (connect + request + response)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to get all idle")
    ap.add_argument("--hold", type=float, default=300, help="seconds to hold them at most")
    args = ap.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        sys.exit("idle_clients.py: loopback addresses only")

    request = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: sg-idle-clients\r\n\r\n"
               % (args.path, args.host, args.port)).encode()
    sel = selectors.DefaultSelector()
    clients = []
    started = ok = failed = active = 0
    errors = {}
    t0 = time.monotonic()
    deadline = t0 + args.timeout

    def fail(c, why):
        nonlocal failed, active
        errors[why] = errors.get(why, 0) + 1
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        c.state = FAILED
        failed += 1
        active -= 1

    while ok + failed < args.count and time.monotonic() < deadline:
        while active < args.in_flight and started < args.count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            c = Client(s, request)
            clients.append(c)
            started += 1
            active += 1
            rc = s.connect_ex((args.host, args.port))
            if rc not in (0, errno.EINPROGRESS):
                fail(c, "connect: " + errno.errorcode.get(rc, str(rc)))
                continue
            sel.register(s, selectors.EVENT_WRITE, c)
        for key, events in sel.select(timeout=0.5):
            c = key.data
            try:
                if c.state == CONNECTING:
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        fail(c, "connect: " + errno.errorcode.get(err, str(err)))
                        continue
                    c.state = SENDING
                if c.state == SENDING:
                    n = c.sock.send(c.out)
                    c.out = c.out[n:]
                    if not c.out:
                        c.state = READING
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                if c.state == READING and events & selectors.EVENT_READ:
                    data = c.sock.recv(65536)
                    if not data:
                        fail(c, "closed before a full response")
                        continue
                    c.buf += data
                    if response_complete(c):
                        sel.unregister(c.sock)
                        c.state = IDLE
                        c.buf = bytearray()
                        ok += 1
                        active -= 1
            except BlockingIOError:
                pass
            except (OSError, ValueError) as e:
                fail(c, type(e).__name__ + ": " + str(e)[:60])

    elapsed = time.monotonic() - t0
    for why, n in sorted(errors.items()):
        print("idle_clients: %d x %s" % (n, why), file=sys.stderr)
    print("idle %d failed %d elapsed %.2f" % (ok, args.count - ok, elapsed), flush=True)

    # Hold: idle connections are not polled; wait for stdin EOF or the hold limit.
    hold = selectors.DefaultSelector()
    try:
        hold.register(sys.stdin, selectors.EVENT_READ)
        end = time.monotonic() + args.hold
        while time.monotonic() < end:
            if hold.select(timeout=min(1.0, max(0.0, end - time.monotonic()))):
                if not sys.stdin.buffer.read1(4096):
                    break
    except (ValueError, OSError, PermissionError):
        time.sleep(min(args.hold, 5))  # stdin is not pollable (e.g. /dev/null): short hold
    for c in clients:
        if c.state == IDLE:
            c.sock.close()
    return 0 if ok == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
