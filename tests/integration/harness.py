"""Integration-test harness: real scalegate and sgbackend processes on loopback.

Standard library only. Everything waits on conditions (a port accepting, a log line, a file
appearing) inside bounded polling loops with deadlines; nothing sleeps to synchronise.

Environment:
  SG_BIN_DIR     build directory (binaries at control/scalegate and bench/sgbackend)
  SG_SOURCE_DIR  repository root (config/examples/...)
  SG_SANITIZED   "1" in sanitizer builds (tests/integration/sanitizer_check.py sets it): the
                 binaries are several times slower, so waits (never checks) are stretched by
                 SLOWDOWN
"""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("SG_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
BIN_DIR = os.environ.get("SG_BIN_DIR") or os.path.join(SOURCE_DIR, "build", "he")
SCALEGATE = os.path.join(BIN_DIR, "control", "scalegate")
SGBACKEND = os.path.join(BIN_DIR, "bench", "sgbackend")
SGFLEET = os.path.join(BIN_DIR, "bench", "sgfleet")
SGSCALER = os.path.join(BIN_DIR, "bench", "sgscaler")

SANITIZED = os.environ.get("SG_SANITIZED") == "1"
SLOWDOWN = 3.0 if SANITIZED else 1.0
START_TIMEOUT = 10.0 * SLOWDOWN
IO_TIMEOUT = 10.0 * SLOWDOWN


class HarnessError(AssertionError):
    pass


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind 0, read it, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def closed_port():
    """A port nothing listens on (same method as free_port: bound and released)."""
    return free_port()


def wait_until(predicate, timeout, interval=0.01, what="condition"):
    """Polls predicate() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise HarnessError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def port_accepts(port, host="127.0.0.1"):
    try:
        s = socket.create_connection((host, port), timeout=0.5)
    except OSError:
        return False
    s.close()
    return True


def wait_port(port, timeout=START_TIMEOUT, proc=None, host="127.0.0.1"):
    def ready():
        if proc is not None and proc.poll() is not None:
            raise HarnessError("process exited with %s before port %d accepted" %
                               (proc.returncode, port))
        return port_accepts(port, host)
    wait_until(ready, timeout, what="port %d to accept" % port)


def _kill(proc, timeout=5.0):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


# --------------------------------------------------------------------------------------------
# Backends


class Backend:
    """One sgbackend process: `Backend("b1").start()`; every response carries X-Backend: b1.
    After kill() (SIGKILL), start() again brings it back on the same port."""

    def __init__(self, backend_id, extra_args=()):
        self.id = backend_id
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self._dir = tempfile.mkdtemp(prefix="sgbackend-")
        self._out = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        """Starts it on a free port, or on its previous port when it ran before."""
        port_file = os.path.join(self._dir, "port")
        try:
            os.unlink(port_file)  # a restart must not read the previous run's file
        except FileNotFoundError:
            pass
        if self._out is not None:
            self._out.close()
        self._out = open(os.path.join(self._dir, "output"), "ab")
        listen = "127.0.0.1:%d" % (self.port or 0)
        self.proc = subprocess.Popen(
            [SGBACKEND, "--listen", listen, "--id", self.id, "--port-file", port_file,
             "--quiet"] + self.extra_args,
            stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def port_written():
            if self.proc.poll() is not None:
                raise HarnessError("sgbackend %s exited with %s: %s" %
                                   (self.id, self.proc.returncode, self.output()))
            try:
                with open(port_file) as f:
                    text = f.read().strip()
            except FileNotFoundError:
                return None
            return int(text) if text else None
        self.port = wait_until(port_written, START_TIMEOUT, what="sgbackend port file")
        wait_port(self.port, proc=self.proc)
        return self

    def output(self):
        try:
            with open(os.path.join(self._dir, "output"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def kill(self):
        """SIGKILL, as a crashing instance: no FIN for in-flight work, listener gone."""
        _kill(self.proc)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill(self.proc)
        if self._out is not None:
            self._out.close()
            self._out = None


class Sgscaler:
    """The local reference scaler (bench/sgscaler) on a free port, with its secret file and a
    state dir of its own. `extra_args` go on its command line (e.g. --initial 2)."""

    def __init__(self, secret, admin_port, token, pool="web", extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="sgscaler-")
        self.secret = secret
        self.secret_path = os.path.join(self.dir, "scaler.secret")
        with open(self.secret_path, "w") as f:
            f.write(secret + "\n")
        self.token_path = os.path.join(self.dir, "admin.token")
        with open(self.token_path, "w") as f:
            f.write(token + "\n")
        self.admin_port = admin_port
        self.pool = pool
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.log_path = os.path.join(self.dir, "sgscaler.log")
        self._log = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/hooks" % self.port

    def start(self):
        port_file = os.path.join(self.dir, "port")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [SGSCALER, "--listen", "127.0.0.1:0", "--port-file", port_file,
             "--secret-file", self.secret_path, "--admin", "http://127.0.0.1:%d" % self.admin_port,
             "--admin-token-file", self.token_path, "--pool", self.pool,
             "--backend-bin", SGBACKEND, "--state-dir", os.path.join(self.dir, "state")]
            + self.extra_args,
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def port_written():
            if self.proc.poll() is not None:
                raise HarnessError("sgscaler exited with %s: %s" % (self.proc.returncode, self.log()))
            try:
                with open(port_file) as f:
                    text = f.read().strip()
            except FileNotFoundError:
                return None
            return int(text) if text else None
        self.port = wait_until(port_written, START_TIMEOUT, what="sgscaler port file")
        wait_port(self.port, proc=self.proc)
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def instances(self):
        """GET /instances: {id: instance dict}."""
        r = request(self.port, "GET", "/instances", headers=[("Connection", "close")])
        if r.status != 200:
            raise HarnessError("GET /instances: %s" % r)
        return {i["id"]: i for i in json.loads(r.body.decode("utf-8"))["instances"]}

    def post(self, body, msg_id=None, timestamp=None, signature=None, secret=None):
        """POSTs a webhook signed with the scaler's secret (or `secret`); `signature` replaces
        the computed one. Returns the Response."""
        body = body if isinstance(body, bytes) else json.dumps(body).encode()
        msg_id = msg_id or "msg_" + os.urandom(8).hex()
        timestamp = str(int(time.time()) if timestamp is None else timestamp)
        if signature is None:
            signature = sign_webhook(secret or self.secret, msg_id, timestamp, body)
        return request(self.port, "POST", "/hooks", body=body,
                       headers=[("Content-Type", "application/json"), ("webhook-id", msg_id),
                                ("webhook-timestamp", timestamp),
                                ("webhook-signature", signature), ("Connection", "close")])

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _kill(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None


def sign_webhook(secret, msg_id, timestamp, body):
    """Standard Webhooks v1 signature: "v1," + base64(HMAC-SHA256(key, id.timestamp.body));
    a whsec_ secret's key is the base64 after the prefix, any other secret is its raw bytes."""
    import base64
    import hashlib
    import hmac
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    mac = hmac.new(key, ("%s.%s." % (msg_id, timestamp)).encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


class Fleet:
    """One sgfleet process: `count` listeners on kernel-chosen ports, each answering every
    request with an empty 200 (plus `X-Load: <x_load>` when given). `ports` lists them."""

    def __init__(self, count=1, x_load=None):
        self.count = count
        self.x_load = x_load
        self.proc = None
        self.ports = []
        self._dir = tempfile.mkdtemp(prefix="sgfleet-")
        self._out = None

    def addresses(self):
        return ["127.0.0.1:%d" % p for p in self.ports]

    def start(self):
        port_file = os.path.join(self._dir, "ports")
        self._out = open(os.path.join(self._dir, "output"), "wb")
        args = [SGFLEET, "--count", str(self.count), "--port-file", port_file, "--quiet"]
        if self.x_load is not None:
            args += ["--x-load", self.x_load]
        self.proc = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

        def ports_written():
            if self.proc.poll() is not None:
                raise HarnessError("sgfleet exited with %s: %s" %
                                   (self.proc.returncode, self.output()))
            try:
                with open(port_file) as f:
                    ports = [int(l) for l in f.read().split()]
            except FileNotFoundError:
                return None
            return ports if len(ports) == self.count else None
        self.ports = wait_until(ports_written, START_TIMEOUT, what="sgfleet port file")
        return self

    def output(self):
        try:
            with open(os.path.join(self._dir, "output"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill(self.proc)
        if self._out is not None:
            self._out.close()
            self._out = None


class PyBackend:
    """A tiny HTTP/1.1 origin in a thread, for cases sgbackend cannot express: it answers every
    request 200 with X-Backend: <id> (keep-alive), records each request head, and for
    /delay/MS waits MS milliseconds first (`received` is set as soon as a request arrives).
    `raw` maps a path to (response bytes, close_after) sent verbatim instead; `idle_close`
    (seconds) closes a connection idle that long and sets `idle_closed`."""

    def __init__(self, backend_id, raw=None, idle_close=None):
        self.id = backend_id
        self.raw = dict(raw or {})
        self.idle_close = idle_close
        self.idle_closed = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.received = threading.Event()
        self._stop = threading.Event()
        self._conns = []
        self._lock = threading.Lock()
        self._thread = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        self.sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(0.05)
        buf = b""
        try:
            while not self._stop.is_set():
                idle_since = time.monotonic()
                while b"\r\n\r\n" not in buf:
                    try:
                        data = c.recv(65536)
                    except socket.timeout:
                        if self._stop.is_set():
                            return
                        if (self.idle_close is not None and not buf and
                                time.monotonic() - idle_since >= self.idle_close):
                            c.close()
                            self.idle_closed.set()
                            return
                        continue
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                while len(buf) < length:
                    try:
                        data = c.recv(65536)
                    except socket.timeout:
                        continue
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                with self._lock:
                    self.requests.append(lines[0])
                self.received.set()
                path = lines[0].split(" ")[1] if " " in lines[0] else "/"
                if path in self.raw:
                    data, close_after = self.raw[path]
                    c.sendall(data)
                    if close_after:
                        return
                    continue
                m = re.match(r"/delay/(\d+)", path)
                if m:
                    self._stop.wait(int(m.group(1)) / 1000.0)
                body = (self.id + "\n").encode()
                c.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: " + self.id.encode() +
                          b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        except OSError:
            return
        finally:
            c.close()

    def stop(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=2)


# --------------------------------------------------------------------------------------------
# scalegate


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if v is None:
        return "null"
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(value, indent=0):
    """Block-style YAML for dicts/lists/scalars (enough for scalegate configs)."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        for k, v in value.items():
            if isinstance(v, dict) and v:
                lines.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 2)))
            elif isinstance(v, list) and v:
                lines.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 2)))
            elif isinstance(v, (dict, list)):
                lines.append("%s%s: %s\n" % (pad, k, "{}" if isinstance(v, dict) else "[]"))
            else:
                lines.append("%s%s: %s\n" % (pad, k, _yaml_scalar(v)))
        return "".join(lines)
    if isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 2)
                lines.append(pad + "- " + body[indent + 2:])
            else:
                lines.append("%s- %s\n" % (pad, _yaml_scalar(item)))
        return "".join(lines)
    return pad + _yaml_scalar(value) + "\n"


class Scalegate:
    """One scalegate process. `config` is YAML text or a dict (rendered as YAML). The ports to
    wait for are the `listen: 127.0.0.1:PORT` addresses of the config unless given."""

    def __init__(self, config, workers=1, ports=None, extra_args=(), wrapper=()):
        """`wrapper` is a command prefix the binary runs under (e.g. unshare + mount); it must
        exec scalegate, so that the process's pid and signals are scalegate's."""
        self.wrapper = list(wrapper)
        self.dir = tempfile.mkdtemp(prefix="scalegate-")
        self.config_path = os.path.join(self.dir, "scalegate.yaml")
        self.log_path = os.path.join(self.dir, "scalegate.log")
        self.workers = workers
        self.extra_args = list(extra_args)
        self.proc = None
        self.returncode = None
        self._log_file = None
        self._write_config(config)
        self.ports = ports if ports is not None else self._listen_ports(self._text)

    @staticmethod
    def _listen_ports(text):
        return [int(p) for p in re.findall(r"listen:\s*\"?127\.0\.0\.1:(\d+)", text)]

    def _write_config(self, config):
        text = config if isinstance(config, str) else to_yaml(config)
        if not re.search(r"^admin:", text, re.M):
            # Every scalegate has an admin listener (127.0.0.1:9900 by default); tests that do
            # not configure one get a free port so that parallel tests never collide.
            if getattr(self, "_admin_port", None) is None:
                self._admin_port = free_port()
            text = text.rstrip("\n") + "\nadmin: { listen: 127.0.0.1:%d }\n" % self._admin_port
        self._text = text
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    @property
    def port(self):
        return self.ports[0]

    def start(self, wait=True):
        self._log_file = open(self.log_path, "wb")
        args = [SCALEGATE, "--config", self.config_path]
        if self.workers:
            args += ["--workers", str(self.workers)]
        self.proc = subprocess.Popen(self.wrapper + args + self.extra_args, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if wait:
            def started():
                if self.proc.poll() is not None:
                    raise HarnessError("scalegate exited with %s at start:\n%s" %
                                       (self.proc.returncode, self.log()))
                if re.search(r"level:\s*\"?(warn|error)", self._text):
                    return True  # no info lines: the listening ports below tell
                return re.search(r"\bstarted\b", self.log()) is not None
            wait_until(started, START_TIMEOUT, what="scalegate 'started' log line")
            for p in self.ports:
                wait_port(p, proc=self.proc)
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def count(self, pattern):
        return len(re.findall(pattern, self.log()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_log(self, pattern, timeout=5.0, after=0):
        """Waits until the log has more than `after` matches of the regex `pattern`."""
        def seen():
            if self.count(pattern) > after:
                return True
            if self.proc.poll() is not None:
                raise HarnessError("scalegate exited (%s) while waiting for %r:\n%s" %
                                   (self.proc.returncode, pattern, self.log()))
            return False
        wait_until(seen, timeout, what="log line %r" % pattern)

    def reload(self, new_config, timeout=5.0):
        """Rewrites the config, sends SIGHUP, waits for the outcome. True = `reloaded`,
        False = `reload failed`."""
        ok_before = self.count(r"\breloaded\b")
        bad_before = self.count(r"reload failed")
        self._write_config(new_config)
        self.proc.send_signal(signal.SIGHUP)

        def outcome():
            if self.count(r"\breloaded\b") > ok_before:
                return "ok"
            if self.count(r"reload failed") > bad_before:
                return "failed"
            if self.proc.poll() is not None:
                raise HarnessError("scalegate exited during reload:\n" + self.log())
            return None
        return wait_until(outcome, timeout, what="reload outcome") == "ok"

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=10.0):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(self.proc)
            raise HarnessError("scalegate did not exit within %.1fs:\n%s" % (timeout, self.log()))
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signals scalegate (SIGTERM: drain) and returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def kill(self):
        _kill(self.proc)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def totals(self):
        """The counters of the last `totals` log line, as a dict of ints."""
        lines = [l for l in self.log().splitlines() if re.search(r"\btotals\b", l)]
        if not lines:
            raise HarnessError("no totals line in the log:\n" + self.log())
        return {k: int(v) for k, v in re.findall(r"\b(\w+)=(\d+)\b", lines[-1])}


# --------------------------------------------------------------------------------------------
# A raw HTTP/1.1 client


class Response:
    def __init__(self, status, reason, headers, body, raw_head, complete=True):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as received
        self.body = body
        self.raw_head = raw_head
        self.complete = complete  # False: the connection closed before the framed end

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def backend(self):
        return self.header("x-backend")

    def __repr__(self):
        return "<Response %s %s headers=%r body=%r>" % (self.status, self.reason, self.headers,
                                                        self.body[:200])


class ConnectionClosed(AssertionError):
    pass


class Client:
    """One client connection. Bytes in, responses out; remembers whether the server closed."""

    def __init__(self, port, host="127.0.0.1", timeout=IO_TIMEOUT, source=None):
        # `source`: the local address to connect from (127.x.y.z stands for a client IP).
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, deadline):
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("response not complete in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_line(self, deadline):
        while b"\r\n" not in self.buf:
            if not self._fill(deadline):
                raise ConnectionClosed("connection closed while reading a line (have %r)" %
                                       self.buf[:200])
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                break
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, method="GET", timeout=None, skip_interim=True):
        """Reads one response. Raises ConnectionClosed when the server closed before a status
        line. A body cut short by a close gives complete=False."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            while b"\r\n\r\n" not in self.buf:
                if not self._fill(deadline):
                    raise ConnectionClosed("server closed the connection without a (complete) "
                                           "response head; got %r" % self.buf[:300])
            raw_head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = raw_head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
                raise AssertionError("bad status line %r" % lines[0])
            status = int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.append((name, value.strip()))
            if 100 <= status < 200 and skip_interim:
                continue
            break
        resp = Response(status, reason, headers, b"", raw_head)
        te = (resp.header("transfer-encoding") or "").lower()
        cl = resp.header("content-length")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return resp
        if "chunked" in te:
            body = []
            while True:
                try:
                    size_line = self._read_line(deadline)
                except ConnectionClosed:
                    resp.complete = False
                    break
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers until the empty line
                        try:
                            if self._read_line(deadline) == b"":
                                break
                        except ConnectionClosed:
                            resp.complete = False
                            break
                    break
                data = self._read_exact(size, deadline)
                body.append(data)
                if len(data) < size:
                    resp.complete = False
                    break
                crlf = self._read_exact(2, deadline)
                if crlf != b"\r\n":
                    raise AssertionError("bad chunk terminator %r" % crlf)
            resp.body = b"".join(body)
        elif cl is not None:
            n = int(cl)
            resp.body = self._read_exact(n, deadline)
            resp.complete = len(resp.body) == n
        else:
            while self._fill(deadline):
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def request(self, method, path, headers=None, body=None, host="localhost", timeout=None):
        self.send(build_request(method, path, headers, body, host))
        return self.read_response(method, timeout=timeout)

    def server_closed(self, timeout=2.0):
        """True when the server closes (EOF or reset) within `timeout` with nothing else
        unread; False when the connection stays open that long. Unread response bytes make
        it an error."""
        if self.buf:
            raise AssertionError("unexpected bytes from the server: %r" % self.buf[:300])
        if self.eof:
            return True
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                self.eof = True
                return True
            if not data:
                self.eof = True
                return True
            raise AssertionError("unexpected bytes from the server: %r" % data[:300])


def build_request(method, path, headers=None, body=None, host="localhost"):
    """Request bytes. `headers` is a list of (name, value) or a dict; Content-Length is added
    for a bytes body unless a framing header is given."""
    hs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in hs}
    lines = ["%s %s HTTP/1.1" % (method, path)]
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    if isinstance(body, str):
        body = body.encode()
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        hs.append(("Content-Length", str(len(body))))
    for k, v in hs:
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def request(port, method="GET", path="/", headers=None, body=None, host="localhost",
            timeout=IO_TIMEOUT):
    """One request on a fresh connection; returns the Response."""
    with Client(port, timeout=timeout) as c:
        return c.request(method, path, headers, body, host)


def parse_echo(body):
    """sgbackend /echo body -> (request_line, [(name, value)], body_bytes, body_sha1)."""
    lines = body.decode("latin-1").rstrip("\n").split("\n")
    request_line = lines[0]
    headers = []
    body_bytes = None
    sha1 = None
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        if name == "body-bytes":
            body_bytes = int(value)
        elif name == "body-sha1":
            sha1 = value
        else:
            headers.append((name, value))
    return request_line, headers, body_bytes, sha1


def echo_header(headers, name):
    name = name.lower()
    return [v for k, v in headers if k.lower() == name]


# --------------------------------------------------------------------------------------------
# Admin API and metrics


def admin_section(directory, token="sg-test-token"):
    """An `admin` config section on a free loopback port with a token file in `directory`.
    Returns (section dict, AdminClient)."""
    path = os.path.join(directory, "admin.token")
    with open(path, "w") as f:
        f.write(token + "\n")
    port = free_port()
    return {"listen": "127.0.0.1:%d" % port, "token_file": path}, AdminClient(port, token)


class AdminClient:
    """Requests to scalegate's admin API (bearer token on every request)."""

    def __init__(self, port, token):
        self.port = port
        self.token = token

    def get(self, path, timeout=IO_TIMEOUT):
        return request(self.port, "GET", path, timeout=timeout,
                       headers=[("Authorization", "Bearer " + self.token),
                                ("Connection", "close")])

    def get_json(self, path):
        r = self.get(path)
        if r.status != 200:
            raise HarnessError("GET %s: %s" % (path, r))
        return json.loads(r.body.decode("utf-8"))

    def metrics_text(self):
        r = self.get("/metrics")
        if r.status != 200:
            raise HarnessError("GET /metrics: %s" % r)
        return r.body.decode("utf-8")

    def metrics(self):
        return Metrics(self.metrics_text())


_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')


class Metrics:
    """Samples of one Prometheus text exposition: [(name, {label: value}, float)]."""

    def __init__(self, text):
        self.text = text
        self.samples = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE_RE.match(line)
            if not m:
                raise HarnessError("unparsable metrics line %r" % line)
            labels = {}
            if m.group(3):
                for k, v in _LABEL_RE.findall(m.group(3)):
                    labels[k] = (v.replace('\\"', '"').replace("\\n", "\n")
                                 .replace("\\\\", "\\"))
            self.samples.append((m.group(1), labels, float(m.group(4))))

    def find(self, name, **labels):
        return [(l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == str(x) for k, x in labels.items())]

    def value(self, name, **labels):
        """The value of the one sample matching; None when there is none."""
        found = self.find(name, **labels)
        if len(found) > 1:
            raise HarnessError("%d samples of %s%r" % (len(found), name, labels))
        return found[0][1] if found else None

    def sum(self, name, **labels):
        return sum(v for _, v in self.find(name, **labels))


# --------------------------------------------------------------------------------------------
# Steady load


class SteadyLoad:
    """A thread sending idempotent GETs through `connections` keep-alive connections in turn,
    one at a time, until stop() or `max_requests` / `max_seconds`. Records every answer as
    (monotonic time, status, X-Backend) and every failure (exception or non-2xx) in `errors`.
    A connection the server closes is replaced. `pause` seconds between requests make a trickle."""

    def __init__(self, port, connections=3, path="/", max_requests=200000, max_seconds=60.0,
                 pause=0.0):
        self.pause = pause
        self.port = port
        self.n_conns = connections
        self.path = path
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.results = []
        self.errors = []
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        conns = [None] * self.n_conns
        deadline = time.monotonic() + self.max_seconds
        try:
            for i in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() >= deadline:
                    break
                k = i % self.n_conns
                try:
                    if conns[k] is None:
                        conns[k] = Client(self.port, timeout=5.0)
                    r = conns[k].request("GET", self.path)
                    now = time.monotonic()
                    with self._lock:
                        self.results.append((now, r.status, r.backend))
                        if not 200 <= r.status < 300:
                            self.errors.append((now, "status %d: %r" % (r.status, r)))
                    if (r.header("connection") or "").lower() == "close":
                        conns[k].close()
                        conns[k] = None
                    if self.pause > 0:
                        self._stop.wait(self.pause)
                except (OSError, AssertionError) as e:
                    with self._lock:
                        self.errors.append((time.monotonic(), "%s: %s" % (type(e).__name__, e)))
                    if conns[k] is not None:
                        conns[k].close()
                    conns[k] = None
        finally:
            for c in conns:
                if c is not None:
                    c.close()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def snapshot(self):
        with self._lock:
            return list(self.results), list(self.errors)

    def count(self):
        with self._lock:
            return len(self.results)

    def share(self, backend, t0, t1):
        """(requests answered by `backend` in [t0, t1), all requests answered in it)."""
        with self._lock:
            window = [b for t, s, b in self.results if t0 <= t < t1]
        return sum(1 for b in window if b == backend), len(window)


# --------------------------------------------------------------------------------------------
# unittest glue


class ProcessTestCase(unittest.TestCase):
    """Starts processes and registers their cleanup at once (per test or per class)."""

    def start_backend(self, backend_id):
        b = Backend(backend_id)
        self.addCleanup(b.stop)
        return b.start()

    def start_fleet(self, count=1, x_load=None):
        f = Fleet(count, x_load)
        self.addCleanup(f.stop)
        return f.start()

    def start_py_backend(self, backend_id, **kw):
        b = PyBackend(backend_id, **kw)
        self.addCleanup(b.stop)
        return b.start()

    def start_proxy(self, config, workers=1, wait=True):
        sg = Scalegate(config, workers=workers)
        self.addCleanup(sg.kill)
        return sg.start(wait=wait)

    @classmethod
    def class_backend(cls, backend_id):
        b = Backend(backend_id)
        cls.addClassCleanup(b.stop)
        return b.start()

    @classmethod
    def class_py_backend(cls, backend_id, **kw):
        b = PyBackend(backend_id, **kw)
        cls.addClassCleanup(b.stop)
        return b.start()

    @classmethod
    def class_proxy(cls, config, workers=1):
        sg = Scalegate(config, workers=workers)
        cls.addClassCleanup(sg.kill)
        return sg.start()

    def assert_served(self, port, path="/", expect_backends=None):
        """A fresh, well-behaved client gets a 200 from a backend."""
        r = request(port, "GET", path)
        self.assertEqual(r.status, 200, r)
        if expect_backends is not None:
            self.assertIn(r.backend, expect_backends, r)
        return r
