#!/usr/bin/env python3
"""Sends malformed messages to a coordinator (loopback only) and checks that
each gets an ERROR reply with a reason. Uses the standard library only: a raw
ZMTP 3.0 DEALER handshake over a TCP socket, so no ZeroMQ binding is needed."""
import socket, struct, sys

def frame(body, more=False):
    flags = 1 if more else 0
    if len(body) < 256:
        return bytes([flags, len(body)]) + body
    return bytes([flags | 2]) + struct.pack(">Q", len(body)) + body

def read_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b

def read_frame(s):
    flags = read_exact(s, 1)[0]
    size = read_exact(s, 8 if flags & 2 else 1)
    n = struct.unpack(">Q", size)[0] if flags & 2 else size[0]
    return flags, read_exact(s, n)

def connect(host, port):
    s = socket.create_connection((host, port), timeout=5)
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL" + b"\x00" * 16 + b"\x00" + b"\x00" * 31
    s.sendall(greeting)
    read_exact(s, 64)
    props = b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    ready = b"\x05READY" + props
    s.sendall(bytes([0x04, len(ready)]) + ready)
    flags, body = read_frame(s)  # peer's READY (a command frame)
    return s

def msgpack_map(d):
    out = bytes([0x80 | len(d)])
    for k, v in d.items():
        kb = k.encode()
        out += bytes([0xa0 | len(kb)]) + kb
        if isinstance(v, int):
            out += bytes([v])
        else:
            vb = v.encode()
            out += bytes([0xa0 | len(vb)]) + vb
    return out

def expect_error(s, frames, what):
    data = b"".join(frame(f, i + 1 < len(frames)) for i, f in enumerate(frames))
    s.sendall(data)
    flags, body = read_frame(s)
    while flags & 1:
        flags, _ = read_frame(s)
    if b"ERROR" not in body or b"reason" not in body:
        raise SystemExit(f"{what}: no ERROR reply: {body!r}")
    print(f"{what}: refused")

host_port = sys.argv[1].split("//")[1]
host, port = host_port.rsplit(":", 1)
s = connect(host, int(port))
expect_error(s, [b"\x93\x01\x02"], "not a map")
expect_error(s, [b"\xdf\x82\xfe\xc0\x02"], "hostile map size")
expect_error(s, [msgpack_map({"v": 1, "type": "SUBMIT"})[:-3]], "truncated header")
expect_error(s, [msgpack_map({"v": 9, "type": "STATUS"})], "wrong protocol version")
expect_error(s, [msgpack_map({"v": 1, "type": "NOPE"})], "unknown type")
expect_error(s, [msgpack_map({"v": 1, "type": "STATUS"}), b"extra frame"], "frame count")
expect_error(s, [msgpack_map({"v": 1, "type": "SUBMIT"})], "SUBMIT without a spec")
s.close()
