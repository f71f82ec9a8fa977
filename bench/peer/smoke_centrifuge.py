#!/usr/bin/env python3
"""Smoke check of the Centrifuge peer server (see README.md beside this file).

Two WebSocket connections to ws://HOST:PORT/connection/websocket, Centrifuge JSON
protocol v1:
  A: connect, subscribe to channel "bench";
  B: connect, publish {"n": 1, "text": "..."} to "bench";
  A must then receive a publication push carrying exactly that data.
Every frame sent and received is printed verbatim.

With --binary the script starts the server itself on a free loopback port, prints the
RSS of the idle process, runs the check and stops the server (SIGTERM). With --url it
checks a server that is already running.

Needs the `websockets` package (PyPI), e.g. in a venv:
  python3 -m venv /var/tmp/kommutator-peer/venv
  /var/tmp/kommutator-peer/venv/bin/pip install websockets
  /var/tmp/kommutator-peer/venv/bin/python bench/peer/smoke_centrifuge.py \
      --binary "$(bench/peer/build-centrifuge.sh)"

Exit status 0 when the publication arrived, 1 otherwise.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

try:
    import websockets
except ImportError:
    sys.exit(
        "smoke_centrifuge: the 'websockets' package is missing; create a venv:\n"
        "  python3 -m venv /var/tmp/kommutator-peer/venv && "
        "/var/tmp/kommutator-peer/venv/bin/pip install websockets\n"
        "and run this script with /var/tmp/kommutator-peer/venv/bin/python"
    )

CHANNEL = "bench"
PAYLOAD = {"n": 1, "text": "hello from kommutator smoke"}


def log(msg):
    print(msg, flush=True)


class Conn:
    """One Centrifuge client connection; prints each frame; splits batched replies."""

    def __init__(self, name, ws):
        self.name = name
        self.ws = ws
        self.pending = []  # JSON messages already received but not yet consumed

    async def send(self, frame):
        text = json.dumps(frame, separators=(",", ":"))
        log(f"{self.name} >>> {text}")
        await self.ws.send(text)

    async def recv(self, timeout):
        if not self.pending:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
            # The server ends every frame with "\n"; printed without it.
            log(f"{self.name} <<< {raw.rstrip(chr(10))}")
            # Protocol v1 may put several JSON replies in one WebSocket frame, one a line.
            self.pending = [json.loads(line) for line in raw.split("\n") if line.strip()]
        return self.pending.pop(0)

    async def call(self, frame, timeout):
        """Send a command and return the reply with the same id (pushes are kept)."""
        await self.send(frame)
        skipped = []
        try:
            while True:
                msg = await self.recv(timeout)
                if msg.get("id") == frame["id"]:
                    if "error" in msg:
                        raise RuntimeError(f"{self.name}: error reply {msg['error']}")
                    return msg
                skipped.append(msg)
        finally:
            self.pending = skipped + self.pending


async def check(url, timeout):
    async with websockets.connect(url, open_timeout=timeout) as wa, \
            websockets.connect(url, open_timeout=timeout) as wb:
        a, b = Conn("A", wa), Conn("B", wb)

        reply = await a.call({"id": 1, "params": {}}, timeout)  # connect (method 0)
        assert "client" in reply.get("result", {}), f"A: bad connect reply {reply}"
        await a.call({"id": 2, "method": 1, "params": {"channel": CHANNEL}}, timeout)  # subscribe

        reply = await b.call({"id": 1, "params": {}}, timeout)
        assert "client" in reply.get("result", {}), f"B: bad connect reply {reply}"
        await b.call({"id": 2, "method": 3,
                      "params": {"channel": CHANNEL, "data": PAYLOAD}}, timeout)  # publish

        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("A: no publication push within the timeout")
            msg = await a.recv(left)
            if "id" in msg:
                continue  # a late reply, not a push
            res = msg.get("result", {})
            # Push type 0 (publication) is omitted from the JSON; data is the Publication.
            if res.get("type", 0) == 0 and res.get("channel") == CHANNEL:
                got = res.get("data", {}).get("data")
                if got != PAYLOAD:
                    raise AssertionError(f"A: publication data {got!r} != {PAYLOAD!r}")
                log("smoke_centrifuge: A received the publication B sent")
                return


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host, port, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with status {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"server did not listen on {host}:{port} within {timeout} s")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--binary", help="start this server binary on a free loopback port")
    where.add_argument("--url", help="check a running server, e.g. "
                       "ws://127.0.0.1:8000/connection/websocket")
    ap.add_argument("--redis", metavar="HOST:PORT",
                    help="with --binary: use the Redis broker at HOST:PORT")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per step")
    ap.add_argument("--idle", type=float, default=2.0,
                    help="with --binary: seconds to let the server idle before reading RSS")
    args = ap.parse_args()

    if args.url:
        asyncio.run(check(args.url, args.timeout))
        log("smoke_centrifuge: OK")
        return 0

    port = free_port()
    addr = f"127.0.0.1:{port}"
    env = dict(os.environ, PEER_ADDR=addr)
    if args.redis:
        env.update(CENTRIFUGE_BROKER="redis", PEER_REDIS_ADDR=args.redis)
    else:
        env.pop("CENTRIFUGE_BROKER", None)
    proc = subprocess.Popen([args.binary], env=env)
    log(f"smoke_centrifuge: started {args.binary} (pid {proc.pid}) on {addr}")
    ok = False
    try:
        wait_port("127.0.0.1", port, proc, args.timeout)
        time.sleep(args.idle)
        log(f"smoke_centrifuge: idle RSS {rss_kib(proc.pid)} KiB")
        asyncio.run(check(f"ws://{addr}/connection/websocket", args.timeout))
        log(f"smoke_centrifuge: RSS after the check {rss_kib(proc.pid)} KiB")
        ok = True
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log(f"smoke_centrifuge: server stopped (status {proc.returncode})")
    if proc.returncode != 0:
        log("smoke_centrifuge: server did not exit cleanly")
        ok = False
    log("smoke_centrifuge: OK" if ok else "smoke_centrifuge: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - report any failure as one line
        print(f"smoke_centrifuge: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
