#!/usr/bin/env python3
"""Sends a fixed number of keep-alive HTTP/1.1 GETs over a few connections.

Used by bench/callgrind.sh: unlike wrk it sends an exact count, so instructions per
request can be read from a profile. Usage: load.py PORT PATH TOTAL CONNS
"""
import selectors
import socket
import sys


def main():
    port, path, total, conns = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: load\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    state = {}
    sent = 0
    for _ in range(min(conns, total)):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        state[s] = bytearray()
        s.sendall(request)
        sent += 1
    done = 0
    errors = 0
    while done < total:
        for key, _ in sel.select(timeout=30):
            s = key.fileobj
            data = s.recv(65536)
            if not data:
                raise SystemExit("connection closed early")
            buf = state[s]
            buf += data
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = bytes(buf[:end]).decode("latin-1").lower()
                length = 0
                for line in head.split("\r\n"):
                    if line.startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                if len(buf) < end + 4 + length:
                    break
                if not head.startswith("http/1.1 200"):
                    errors += 1
                del buf[: end + 4 + length]
                done += 1
                if sent < total:
                    s.sendall(request)
                    sent += 1
    print(f"{done} responses, {errors} not 200")


if __name__ == "__main__":
    main()
