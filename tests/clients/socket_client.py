#!/usr/bin/env python3
"""A poetry client on Python's socket module, not written for this server:
connects, reads to the end, and prints one JSON line saying what it saw.

    socket_client.py HOST PORT [--idle SECONDS] [--count N]

end is "eof" (an orderly end of stream), "reset" (ECONNRESET) or "idle"
(nothing for --idle seconds; the client then closes and leaves). With
--count N it fetches N times, one after another, and prints one line each.
"""
import argparse
import hashlib
import json
import socket
import time


def fetch(host, port, idle):
    started = time.monotonic()
    sock = socket.create_connection((host, port))
    sock.settimeout(idle)
    got = bytearray()
    reads = []
    first = last = None
    end = "eof"
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            now = time.monotonic()
            first = first if first is not None else now
            last = now
            got += chunk
            reads.append(len(chunk))
    except ConnectionResetError:
        end = "reset"
    except socket.timeout:
        end = "idle"
    ended = time.monotonic()
    sock.close()
    ms = lambda t: None if t is None else round((t - started) * 1000, 1)
    return {
        "bytes": len(got),
        "end": end,
        "first_byte_ms": ms(first),
        "last_byte_ms": ms(last),
        "end_ms": ms(ended),
        "reads": reads,
        "sha256": hashlib.sha256(got).hexdigest(),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--count", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.count):
        print(json.dumps(fetch(args.host, args.port, args.idle)), flush=True)


if __name__ == "__main__":
    main()
