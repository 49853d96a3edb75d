"""Slow clients for bench/serve-load.sh: N connections that each send a request's headers one
byte a second and never finish them (slowloris). A connection the server closes is reopened at
once, so the server always faces N of them. Runs for --seconds, then prints how many times the
server cut one off.

    python3 bench/slowloris.py HOST:PORT --connections 100 --seconds 60
"""

import argparse
import socket
import time

HEAD = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("addr")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    host, port = args.addr.rsplit(":", 1)
    clients = [None] * args.connections  # (socket, bytes sent)
    cut_off = failed_connects = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        for i, client in enumerate(clients):
            if client is None:
                try:
                    s = socket.create_connection((host, int(port)), timeout=2)
                    clients[i] = [s, 0]
                except OSError:
                    failed_connects += 1
                continue
            s, sent = client
            try:
                s.send(HEAD[sent % len(HEAD):sent % len(HEAD) + 1])
                client[1] = sent + 1
            except OSError:
                cut_off += 1
                s.close()
                clients[i] = None
        time.sleep(1.0)
    for client in clients:
        if client is not None:
            client[0].close()
    print(f"SLOWLORIS {{\"connections\": {args.connections}, \"cut_off\": {cut_off}, \"failed_connects\": {failed_connects}}}")


if __name__ == "__main__":
    main()
