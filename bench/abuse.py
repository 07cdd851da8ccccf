#!/usr/bin/env python3
"""Two abuse scenarios against a real `paygate serve` (started here on a temp SQLite database,
embedded sandbox), for the figures in docs/security.md. Python standard library only.

  bench/abuse.py flood PAYGATE_BIN [seconds] [connections] [sources]
      Garbage notifies (4 KiB of random bytes, WeChat and Alipay endpoints) as fast as
      `connections` keep-alive connections can send them, spread over `sources` loopback
      addresses (127.0.0.1, 127.0.0.2, ...). Prints the rate and how much the database grew.

  bench/abuse.py stall PAYGATE_BIN [connections] [body_timeout_ms]
      `connections` connections each send a notify head announcing 60,000 bytes, then 1 KiB
      of it, then stall. Prints the gateway's RSS before and at the peak, and when the last
      connection was closed by the server.
"""

import asyncio
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request


def start_gateway(binary, directory, extra_env=None):
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "RUST_LOG": "warn",
            "PAYGATE__DATABASE_URL": f"sqlite://{directory}/paygate.db",
            "PAYGATE__RECONCILER__ENABLED": "false",
        }
    )
    env.update(extra_env or {})
    log = open(os.path.join(directory, "paygate.log"), "wb")
    process = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}"],
        cwd=directory,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit("the gateway did not become ready")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_bytes(directory):
    return sum(
        os.path.getsize(os.path.join(directory, name))
        for name in os.listdir(directory)
        if name.startswith("paygate.db")
    )


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if length:
        await reader.readexactly(length)
    return head[9:12]


async def flood_connection(port, source, deadline, counts):
    paths = ["/notify/wechat/sandbox", "/notify/alipay/sandbox"]
    while time.monotonic() < deadline:
        try:
            sock = socket.socket()
            sock.bind((source, 0))
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            while time.monotonic() < deadline:
                body = random.randbytes(4096)
                path = random.choice(paths)
                writer.write(
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                status = await read_response(reader)
                counts[status] = counts.get(status, 0) + 1
            writer.close()
        except (OSError, asyncio.IncompleteReadError):
            counts[b"reconnect"] = counts.get(b"reconnect", 0) + 1


def flood(binary, seconds=60, connections=32, sources=50):
    with tempfile.TemporaryDirectory() as directory:
        process, port = start_gateway(binary, directory)
        time.sleep(1)
        before = database_bytes(directory)
        counts = {}
        deadline = time.monotonic() + seconds
        started = time.monotonic()

        async def run():
            await asyncio.gather(
                *(
                    flood_connection(port, f"127.0.0.{1 + i % sources}", deadline, counts)
                    for i in range(connections)
                )
            )

        asyncio.run(run())
        elapsed = time.monotonic() - started
        during = database_bytes(directory)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        after = database_bytes(directory)
        with sqlite3.connect(os.path.join(directory, "paygate.db")) as db:
            rows, body_bytes = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM callbacks"
            ).fetchone()
        sent = sum(v for k, v in counts.items() if k != b"reconnect")
        log_bytes = os.path.getsize(os.path.join(directory, "paygate.log"))
        print(f"{sent} garbage notifies in {elapsed:.1f} s ({sent / elapsed:.0f}/s) "
              f"from {sources} source addresses over {connections} connections; "
              f"answers {dict((k.decode(), v) for k, v in counts.items())}")
        print(f"database: {before / 1e6:.2f} MB before, {during / 1e6:.2f} MB at the end of the "
              f"flood, {after / 1e6:.2f} MB after shutdown: grew {(max(during, after) - before) / 1e6:.2f} MB; "
              f"log {log_bytes / 1e3:.0f} kB")
        print(f"audit rows stored: {rows} ({body_bytes / 1e6:.2f} MB of bodies)")


async def stall_connection(port, closed_at):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /notify/wechat/sandbox HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
        b"Content-Length: 60000\r\n\r\n" + b"<xml>" + b"a" * 1019
    )
    await writer.drain()
    try:
        while await reader.read(4096):
            pass
    except OSError:
        pass
    closed_at.append(time.monotonic())
    writer.close()


def stall(binary, connections=1000, body_timeout_ms=10000):
    with tempfile.TemporaryDirectory() as directory:
        env = {"PAYGATE__HTTP__REQUEST_BODY_TIMEOUT_MS": str(body_timeout_ms)}
        process, port = start_gateway(binary, directory, env)
        time.sleep(1)
        idle = rss_kib(process.pid)
        closed_at = []
        peak = [idle]

        async def run():
            started = time.monotonic()
            tasks = [asyncio.create_task(stall_connection(port, closed_at)) for _ in range(connections)]
            while not all(t.done() for t in tasks):
                peak[0] = max(peak[0], rss_kib(process.pid))
                await asyncio.sleep(0.05)
                if time.monotonic() - started > body_timeout_ms / 1000 * 3 + 30:
                    break
            return started

        started = asyncio.run(run())
        open_left = connections - len(closed_at)
        last = max(closed_at) - started if closed_at else float("nan")
        first = min(closed_at) - started if closed_at else float("nan")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        print(f"{connections} stalled notify bodies, body timeout {body_timeout_ms} ms: "
              f"gateway RSS {idle / 1024:.1f} MiB idle, {peak[0] / 1024:.1f} MiB peak "
              f"(+{(peak[0] - idle) / 1024:.1f} MiB); closed by the server after "
              f"{first:.1f}–{last:.1f} s; still open: {open_left}")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("flood", "stall"):
        sys.exit(__doc__)
    scenario, binary, *numbers = sys.argv[1:]
    numbers = [int(n) for n in numbers]
    (flood if scenario == "flood" else stall)(binary, *numbers)
