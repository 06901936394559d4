#!/usr/bin/env python3
"""Sign N times through an SSH agent over one connection; print requests/s.

usage: agent-client.py SOCKET N
Signs an SSHSIG-shaped blob (what `ssh-keygen -Y sign` sends) with the agent's first identity,
so keys with any application accept it. The same client drives both agents in agent-bench.sh.
"""
import socket
import struct
import sys
import time


def call(sock, body):
    sock.sendall(struct.pack(">I", len(body)) + body)
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            raise SystemExit("agent closed the connection")
        head += chunk
    (n,) = struct.unpack(">I", head)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SystemExit("agent closed the connection")
        data += chunk
    return data


def string(b):
    return struct.pack(">I", len(b)) + b


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    ids = call(s, b"\x0b")
    if ids[0] != 12 or struct.unpack(">I", ids[1:5])[0] == 0:
        raise SystemExit("the agent lists no identity")
    (blen,) = struct.unpack(">I", ids[5:9])
    blob = ids[9 : 9 + blen]
    start = time.perf_counter()
    for i in range(n):
        data = b"SSHSIG" + string(b"file") + string(b"") + string(b"sha512") + string(i.to_bytes(64, "big"))
        reply = call(s, b"\x0d" + string(blob) + string(data) + struct.pack(">I", 0))
        if reply[0] != 14:
            raise SystemExit(f"sign request {i} failed (reply type {reply[0]})")
    elapsed = time.perf_counter() - start
    print(f"{n} signatures in {elapsed:.3f} s: {n / elapsed:.1f} sign/s, {1000 * elapsed / n:.3f} ms each")


if __name__ == "__main__":
    main()
