#!/usr/bin/env python3
"""`mlc serve` under load: requests/s and p50/p99 latency with micro-batching on and off.

Usage:
    python benchmarks/serve_load.py [--model model.mlc] [--clients 64] [--seconds 5] [--rounds 2]
                                    [--rows 1,16] [--window-ms 2]

Without --model it trains examples/titanic.dml briefly (2 epochs: the speed of serving
does not depend on how well the model predicts) into a temporary folder.

Two servers run side by side on loopback ports, the same model in each: one with
`--batch-window-ms W` (batching on), one with `--batch-window-ms 0` (off). For each
request size (rows per request), the two are measured in turn, round after round (on,
off, on, off, ...), so both see the same load from anything else on the machine; each
round is `--seconds` long, after a warm-up round per server and size that is not counted
(it also compiles the batch shapes). The numbers are over all counted rounds together.

The clients are `--clients` keep-alive connections from one asyncio loop in this process
(rows from the titanic data): they share the machine's cores with the server, so on a
small machine the server gets less than all of it.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLC = [sys.executable, "-m", "mlc.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def start(model, window_ms, max_rows) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(MLC + ["serve", str(model), "--port", str(port), "--batch-window-ms", str(window_ms),
                                   "--max-batch-rows", str(max_rows)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"mlc serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            if get(port, "/health")[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("mlc serve did not start within 180 s")


def load(port, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """`clients` concurrent keep-alive connections sending the bodies in turn for `seconds`;
    the latencies of 200 answers. An asyncio client speaking minimal HTTP/1.1 by hand: it
    costs the machine far less than `clients` http.client threads, which contend for the GIL."""
    return asyncio.run(_load(port, bodies, clients, seconds))


async def _load(port, bodies, clients, seconds):
    lat, errors = [], []
    t_end = time.perf_counter() + seconds
    requests = [b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(b), b) for b in bodies]

    async def client(k):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        try:
            while time.perf_counter() < t_end:
                req = requests[i % len(requests)]
                i += clients
                t0 = time.perf_counter()
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                await reader.readexactly(length)
                if status != 200:
                    errors.append(f"status {status}")
                    continue
                lat.append(time.perf_counter() - t0)
        except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration) as e:
            errors.append(repr(e))
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return {"latencies": lat, "seconds": time.perf_counter() - t0, "errors": errors}


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def train_titanic(folder: Path) -> Path:
    (folder / "data").mkdir()
    shutil.copy(ROOT / "examples" / "data" / "titanic.csv", folder / "data" / "titanic.csv")
    (folder / "titanic.dml").write_text((ROOT / "examples" / "titanic.dml").read_text() + "\ntrain { epochs = 2 }\n")
    r = subprocess.run(MLC + ["run", "titanic.dml", "--out", "out"], cwd=folder, capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr)
    return folder / "out" / "model.mlc"


def rows_for(model_inputs: list[str]) -> list[dict]:
    with open(ROOT / "examples" / "data" / "titanic.csv") as f:
        rows = [{c: r[c] for c in model_inputs} for r in csv.DictReader(f)]
    for r in rows:
        if "age" in r:
            r["age"] = float(r["age"]) if r["age"] else None
    return rows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    vers = []
    for pkg in ("mlc", "jax", "jaxlib", "starlette", "uvicorn", "pyarrow"):
        try:
            vers.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {cpu}, {os.cpu_count()} cores; "
            f"Python {platform.python_version()}; {', '.join(vers)}; load average {os.getloadavg()[0]:.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rows", default="1,16", help="rows per request, comma-separated sizes")
    ap.add_argument("--window-ms", type=float, default=2.0)
    args = ap.parse_args()
    print(machine())
    tmp = None
    model = args.model
    if model is None:
        tmp = Path(tempfile.mkdtemp(prefix="serve_load_"))
        model = train_titanic(tmp)
    sizes = [int(s) for s in args.rows.split(",")]
    servers = {}
    try:
        servers["on"] = start(model, args.window_ms, 4096)
        servers["off"] = start(model, 0, 4096)
        inputs = [i["name"] for i in get(servers["on"][1], "/schema")[1]["inputs"]]
        rows = rows_for(inputs)
        results = {}
        for size in sizes:
            bodies = [json.dumps(rows[s:s + size]).encode() for s in range(0, len(rows) - size, max(1, size))]
            for mode, (_, port) in servers.items():  # warm-up, not counted
                load(port, bodies, args.clients, min(args.seconds, 3.0))
            for _ in range(args.rounds):
                for mode, (_, port) in servers.items():
                    before = get(port, "/health")[1]
                    r = load(port, bodies, args.clients, args.seconds)
                    after = get(port, "/health")[1]
                    acc = results.setdefault((size, mode), {"latencies": [], "seconds": 0.0, "errors": [],
                                                            "requests": 0, "batches": 0})
                    acc["latencies"] += r["latencies"]
                    acc["seconds"] += r["seconds"]
                    acc["errors"] += r["errors"]
                    acc["requests"] += after["requests"] - before["requests"] - 1  # less the /health itself
                    acc["batches"] += after["batches"] - before["batches"]
        print(f"\n{args.clients} clients, {args.rounds} rounds of {args.seconds:g} s per server and size, "
              f"batching window {args.window_ms:g} ms")
        print("| rows/request | batching | requests/s | rows/s | p50 ms | p99 ms | requests per batch | errors |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|")
        for size in sizes:
            for mode in servers:
                acc = results[(size, mode)]
                n = len(acc["latencies"])
                rps = n / acc["seconds"]
                per_batch = acc["requests"] / acc["batches"] if acc["batches"] else float("nan")
                print(f"| {size} | {mode} | {rps:,.0f} | {rps * size:,.0f} | {1000 * quantile(acc['latencies'], .5):.1f} "
                      f"| {1000 * quantile(acc['latencies'], .99):.1f} | {per_batch:.1f} | {len(acc['errors'])} |")
            on, off = results[(size, "on")], results[(size, "off")]
            gain = (len(on["latencies"]) / on["seconds"]) / max(1e-9, len(off["latencies"]) / off["seconds"])
            print(f"|  | gain | {gain:.2f}x |  |  |  |  |  |")
        print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
        for proc, _ in servers.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
