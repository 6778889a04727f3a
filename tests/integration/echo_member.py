"""A pool member for test_pktgen.py, run inside a member network namespace: TCP and UDP echo
on one address and port, each reply prefixed with the member's name and a space, so a client
behind scalegate's NAT (replies come from the VIP) learns which member answered.

  echo_member.py NAME HOST PORT

One selectors loop, non-blocking sockets, standard library only. Exits on SIGTERM.
"""

import selectors
import signal
import socket
import sys

NAME, HOST, PORT = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3])
PREFIX = NAME + b" "

sel = selectors.DefaultSelector()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((HOST, PORT))
udp.setblocking(False)
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind((HOST, PORT))
tcp.listen(1024)
tcp.setblocking(False)
sel.register(udp, selectors.EVENT_READ, "udp")
sel.register(tcp, selectors.EVENT_READ, "listen")
pending = {}  # connection -> bytes not written yet
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)


def close(conn):
    sel.unregister(conn)
    pending.pop(conn, None)
    conn.close()


def flush(conn):
    data = pending.get(conn, b"")
    try:
        n = conn.send(data) if data else 0
    except (BlockingIOError, InterruptedError):
        n = 0
    except OSError:
        close(conn)
        return
    pending[conn] = data[n:]
    sel.modify(conn, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending[conn] else 0),
               "conn")


print("echo member %s on %s:%d" % (NAME.decode(), HOST, PORT), flush=True)
while running:
    for key, events in sel.select(timeout=0.5):
        kind, sock = key.data, key.fileobj
        if kind == "udp":
            for _ in range(64):
                try:
                    data, addr = sock.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                sock.sendto(PREFIX + data, addr)
        elif kind == "listen":
            for _ in range(64):
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                conn.setblocking(False)
                pending[conn] = b""
                sel.register(conn, selectors.EVENT_READ, "conn")
        else:
            if events & selectors.EVENT_READ:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    close(sock)
                    continue
                if not data:
                    close(sock)
                    continue
                pending[sock] += PREFIX + data
            flush(sock)
