"""Client side of test_dataplane.py, run inside the client network namespace.

Reads one JSON command per line on stdin and answers one JSON line on stdout:
  {"op": "open", "ports": [p, ...]}   keep-alive connections from these source ports to the VIP,
                                      one GET each -> {"p": backend}
  {"op": "again"}                     another GET on every open connection
                                      -> {"p": backend or "error:<kind>"}
  {"op": "reconnect", "ports": [...]} close those connections, connect again from the same
                                      source ports, one GET each -> {"p": backend or error}
Standard library only; every socket operation has a timeout.
"""

import json
import socket
import struct
import sys

VIP = sys.argv[1]
VIP_PORT = int(sys.argv[2])
CLIENT_IP = sys.argv[3]
TIMEOUT = 5.0

conns = {}


def request(sock):
    sock.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    backend = None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-backend":
            backend = value.strip().decode()
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return backend


def connect(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(TIMEOUT)
    s.bind((CLIENT_IP, port))
    s.connect((VIP, VIP_PORT))
    return s


def attempt(fn):
    try:
        return fn()
    except socket.timeout:
        return "error:timeout"
    except ConnectionResetError:
        return "error:reset"
    except (ConnectionError, OSError) as e:
        return "error:" + type(e).__name__


for line in sys.stdin:
    cmd = json.loads(line)
    out = {}
    if cmd["op"] == "open":
        for p in cmd["ports"]:
            def go(p=p):
                conns[p] = connect(p)
                return request(conns[p])
            out[p] = attempt(go)
    elif cmd["op"] == "again":
        for p, s in conns.items():
            out[p] = attempt(lambda s=s: request(s))
    elif cmd["op"] == "reconnect":
        for p in cmd["ports"]:
            old = conns.pop(p, None)
            if old is not None:
                # Abortive close (RST): the source port is free again at once.
                old.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                old.close()
            def go(p=p):
                conns[p] = connect(p)
                return request(conns[p])
            out[p] = attempt(go)
    print(json.dumps(out), flush=True)
