#!/usr/bin/env python3
"""Writes the seed corpora that are easier to compute than to type: HTTP/2 client byte streams
(tests/fuzz/corpus/http2_session/) and signed webhook deliveries (tests/fuzz/corpus/webhook/).

Run from the repository root after changing it: python3 tests/fuzz/make_seeds.py
The files are checked in; this script only documents how they were made.
"""
import base64
import hashlib
import hmac
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "corpus")
# The frame and HPACK integer encoders of the integration tests' raw HTTP/2 client.
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from h2flood import PREFACE, frame, hpack_int  # noqa: E402

# Frame types and flags (RFC 9113 section 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20


def lit(name, value, indexing=False):
    """A literal header field with a new name, no Huffman (RFC 7541 section 6.2)."""
    name, value = name.encode(), value.encode()
    first = 0x40 if indexing else 0x00
    return (hpack_int(0, 6 if indexing else 4, first) + hpack_int(len(name), 7, 0) + name +
            hpack_int(len(value), 7, 0) + value)


def idx(i):
    return hpack_int(i, 7, 0x80)


GET = idx(2)
POST = idx(3)
PATH_ROOT = idx(4)
HTTP = idx(6)


def request_block(method=GET, path="/", authority="a.example", extra=()):
    block = method + (PATH_ROOT if path == "/" else lit(":path", path)) + HTTP
    block += lit(":authority", authority)
    for n, v in extra:
        block += lit(n, v)
    return block


def settings(pairs=()):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def write(corpus, name, data):
    d = os.path.join(ROOT, corpus)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# Mode byte of http2_session_fuzz.cc: bit 0 tight limits, bit 1 the harness sends the preface,
# bits 2..7 write size in 7-byte units (0: one write).
DEFAULT, TIGHT, PREFACED = 0, 1, 2


def h2(name, body, mode=PREFACED):
    write("http2_session", name, bytes([mode]) + body)


def http2_seeds():
    s = settings([(3, 100), (4, 65535)])
    get1 = frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block())
    h2("get", s + get1)
    h2("get_with_preface", PREFACE + s + get1, DEFAULT)
    h2("get_split_writes", s + get1, PREFACED | (3 << 2))
    h2("partial_preface", PREFACE[:10], DEFAULT)
    h2("http1_not_h2", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", DEFAULT)
    h2("post_content_length",
       s + frame(HEADERS, END_HEADERS, 1, request_block(POST, "/up", extra=[("content-length", "5")]))
       + frame(DATA, END_STREAM, 1, b"hello"))
    h2("post_chunked_body",
       s + frame(HEADERS, END_HEADERS, 1, request_block(POST, "/up"))
       + frame(DATA, 0, 1, b"a" * 100) + frame(DATA, 0, 1, b"b" * 3)
       + frame(DATA, END_STREAM, 1, b""))
    h2("post_trailers",
       s + frame(HEADERS, END_HEADERS, 1, request_block(POST, "/up"))
       + frame(DATA, 0, 1, b"x" * 10)
       + frame(HEADERS, END_STREAM | END_HEADERS, 1, lit("grpc-status", "0")))
    block = request_block(extra=[("x-a", "1" * 40), ("x-b", "2" * 40)])
    h2("continuation",
       s + frame(HEADERS, END_STREAM, 1, block[:20]) + frame(CONTINUATION, 0, 1, block[20:50])
       + frame(CONTINUATION, END_HEADERS, 1, block[50:]))
    flood = s + frame(HEADERS, END_STREAM, 1, block[:5])
    for i in range(5, len(block) - 1):
        flood += frame(CONTINUATION, 0, 1, block[i:i + 1])
    h2("continuation_flood", flood, PREFACED | TIGHT)
    reset = s
    for sid in range(1, 40, 2):
        reset += frame(HEADERS, END_STREAM | END_HEADERS, sid, request_block())
        reset += frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
    h2("rapid_reset", reset, PREFACED | TIGHT)
    h2("rapid_reset_default", reset)
    many = s
    for sid in range(1, 12, 2):
        many += frame(HEADERS, END_HEADERS, sid, request_block(POST, "/s%d" % sid))
    h2("too_many_streams", many, PREFACED | TIGHT)
    h2("headers_too_large",
       s + frame(HEADERS, END_STREAM | END_HEADERS, 1,
                 request_block(extra=[("x-h%d" % i, "v" * 200) for i in range(8)])),
       PREFACED | TIGHT)
    h2("too_many_headers",
       s + frame(HEADERS, END_STREAM | END_HEADERS, 1,
                 request_block(extra=[("x-h%d" % i, "v") for i in range(12)])),
       PREFACED | TIGHT)
    h2("hpack_dynamic_table",
       s + frame(HEADERS, END_STREAM | END_HEADERS, 1,
                 request_block() + lit("x-token", "abc", indexing=True))
       + frame(HEADERS, END_STREAM | END_HEADERS, 3, GET + PATH_ROOT + HTTP + idx(62) + idx(63)))
    h2("hpack_table_size_update",
       s + frame(HEADERS, END_STREAM | END_HEADERS, 1, hpack_int(0, 5, 0x20) + request_block()))
    h2("connect",
       s + frame(HEADERS, END_HEADERS, 1, lit(":method", "CONNECT") + lit(":authority", "b:443")))
    h2("control_frames",
       s + frame(SETTINGS, ACK, 0) + frame(PING, 0, 0, b"12345678")
       + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1000))
       + frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 16))
       + frame(HEADERS, END_STREAM | END_HEADERS | PRIO, 1,
               struct.pack(">IB", 0, 16) + request_block())
       + frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1))
       + frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0)))
    h2("padded",
       s + frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1,
                 bytes([4]) + request_block() + b"\0\0\0\0"))
    h2("small_window",
       settings([(4, 10), (5, 16384)])
       + frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block(path="/w")))
    h2("protocol_error_stream0_data", s + frame(DATA, 0, 0, b"x"))
    h2("bad_missing_method", s + frame(HEADERS, END_STREAM | END_HEADERS, 1, PATH_ROOT + HTTP))
    h2("upper_case_header",
       s + frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block(extra=[("X-Up", "1")])))


def webhook_seeds():
    now = 1_800_000_000  # the harness's clock
    secret_raw = b"0123456789abcdef0123456789abcdef"
    whsec = "whsec_" + base64.b64encode(secret_raw).decode()

    def sign(key, wid, ts, body):
        mac = hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()
        return "v1," + base64.b64encode(mac).decode()

    def delivery(secret, key, wid, ts, body, sig=None, extra_sigs=""):
        sig = sig if sig is not None else sign(key, wid, ts, body)
        head = f"{secret}\n{wid}\n{ts}\n{(extra_sigs + ' ' + sig).strip()}\n".encode()
        return head + body

    event = {"type": "scale_out", "id": "msg_1", "timestamp": "2027-01-15T08:00:00.123Z",
             "data": {"pool": "web", "old_capacity": 2, "new_capacity": 4,
                      "reason": {"kind": "rule", "rule": "cpu avg 5m > 75 -> increase 2",
                                 "metric": "cpu", "value": 81.5, "threshold": 75,
                                 "profile": "default", "message": ""},
                      "zones": {"1": 1, "2": 1}, "instances": []}}
    body = json.dumps(event).encode()
    write("webhook", "scale_out_whsec", delivery(whsec, secret_raw, "msg_1", now, body))
    write("webhook", "scale_out_raw_secret",
          delivery("passphrase", b"passphrase", "msg_1", now - 200, body))
    write("webhook", "two_signatures",
          delivery(whsec, secret_raw, "msg_2", now, body, extra_sigs="v1a,abcd v1,AAAA"))
    write("webhook", "stale", delivery(whsec, secret_raw, "msg_3", now - 301, body))
    write("webhook", "future", delivery(whsec, secret_raw, "msg_3", now + 400, body))
    write("webhook", "bad_signature",
          delivery(whsec, secret_raw, "msg_4", now, body, sig="v1," + "A" * 44))
    write("webhook", "bad_secret_base64", delivery("whsec_abc", b"", "msg_5", now, body, sig="v1,x"))
    write("webhook", "timestamp_not_number",
          f"{whsec}\nmsg_6\n17e8\nv1,x\n".encode() + body)
    scale_in = dict(event, type="scale_in")
    scale_in["data"] = dict(event["data"], old_capacity=4, new_capacity=3, zones={"2": 1},
                            instances=["web-3"])
    b = json.dumps(scale_in).encode()
    write("webhook", "scale_in", delivery(whsec, secret_raw, "msg_7", now, b))
    repair = dict(event, type="repair")
    repair["data"] = dict(event["data"], old_capacity=3, new_capacity=3, zones={},
                          instances=["web-1"], repair={"action": "reimage"})
    repair["data"]["reason"] = {"kind": "repair", "message": "unhealthy for 10m"}
    b = json.dumps(repair).encode()
    write("webhook", "repair", delivery(whsec, secret_raw, "msg_8", now, b))
    upgrade = dict(event, type="upgrade_batch", timestamp="2027-01-15T08:00:00Z")
    upgrade["data"] = dict(event["data"], old_capacity=3, new_capacity=3, zones={},
                           instances=["web-0", "web-1"],
                           upgrade={"version": "v2", "batch_index": 0, "batch_count": 2})
    upgrade["data"]["reason"] = {"kind": "upgrade"}
    b = json.dumps(upgrade).encode()
    write("webhook", "upgrade_batch", delivery(whsec, secret_raw, "msg_9", now, b))
    azure = {"version": "1.0", "status": "Activated", "operation": "Scale Out",
             "context": {"oldCapacity": "2", "newCapacity": "4"},
             "properties": {"scalegate.zones": "1=1,2=1"}}
    b = json.dumps(azure).encode()
    write("webhook", "azure_scale_out", delivery(whsec, secret_raw, "msg_10", now, b))
    write("webhook", "rfc3339_nanos", b"s\ni\n2026-11-28T16:20:00.123456789Z\n\n"
          b"1970-01-01T00:00:00Z")
    bad = dict(event)
    bad["data"] = dict(event["data"], zones={"1": -1})
    write("webhook", "bad_zone_count",
          delivery(whsec, secret_raw, "msg_11", now, json.dumps(bad).encode()))
    write("webhook", "not_json", delivery(whsec, secret_raw, "msg_12", now, b"{\"type\": "))
    write("webhook", "empty", b"")


if __name__ == "__main__":
    http2_seeds()
    webhook_seeds()
