"""Fleet load: many reporters push deltas at once to two `snoop receive` processes that
share one PostgreSQL (behind a stand-in load balancer: each POST goes to either).

    .venv/bin/python bench/receiver_load.py [--reporters 1000] [--deltas 10] [--files 40]
                                             [--images 20] [--repeat 0.05] [--json F]

Each simulated reporter is one workload of one of `--images` images. It pushes
`--deltas` deltas one after another (the first a full snapshot), each with `--files`
paths drawn from its image's files, so replicas of one image overlap; a share
(`--repeat`) of its POSTs is sent twice with the same idempotency key, as a retry after
a lost reply would be. All reporters run at once (asyncio, httpx).

Prints deltas stored per second, POST latency p50/p99 (of each POST, including those a
busy receiver answered 503 with Retry-After; a reporter then waits and retries, as this
one does), the database's size, and whether the union the receivers answer for each
image (`/v1/report?image=`) equals the union that was sent, with per-file workload
counts. Exit 1 when they differ.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from snoop.common.delta import Delta, delta_key  # noqa: E402
from snoop.common.report import Report  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.postgres import start_server, stop_server  # noqa: E402

TOKEN = "bench-token"
T0 = 1_760_000_000.0


def image_files(image: int, count: int) -> list[bytes]:
    return [f"/usr/lib/app{image}/mod{n:05d}.so".encode() for n in range(count)]


def make_delta(reporter: int, image: int, seq: int, paths: list[bytes], full: bool) -> bytes:
    report = Report(workload=f"app{image}-{reporter}", workload_key=f"c{reporter:06d}",
                    image_ref=f"app{image}:1.0", started_at=T0,
                    last_updated_at=T0 + seq, total_events=seq * len(paths))
    for path in paths:
        report.add_file(path, 1, T0 + seq, T0 + seq, 1, ("app",))
    return Delta(f"node-{reporter % 50:02d}", f"c{reporter:06d}", full, report).encode()


async def reporter_task(n: int, args: argparse.Namespace, clients: list[httpx.AsyncClient],
                        sent: dict[int, dict[bytes, set[int]]], latencies: list[float],
                        outcome: dict[str, int], rng: random.Random) -> None:
    image = n % args.images
    universe = image_files(image, args.image_files)
    for seq in range(args.deltas):
        paths = rng.sample(universe, args.files)
        body = make_delta(n, image, seq, paths, full=seq == 0)
        for path in paths:
            sent[image].setdefault(path, set()).add(n)
        gz = gzip.compress(body, 6)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Encoding": "gzip",
                   "Content-Type": "application/json", "Idempotency-Key": delta_key(body)}
        times = 2 if rng.random() < args.repeat else 1
        for _ in range(times):
            deadline = time.monotonic() + 600  # a reporter retries for as long as it takes
            attempt = 0
            while True:
                attempt += 1
                client = clients[rng.randrange(len(clients))]  # the load balancer
                started = time.perf_counter()
                try:
                    reply = await client.post("/v1/deltas", content=gz, headers=headers)
                except httpx.HTTPError:
                    outcome["errors"] += 1
                    reply = None
                if reply is not None:
                    latencies.append(time.perf_counter() - started)
                    if reply.status_code == 200:
                        outcome[reply.json().get("status", "?")] += 1
                        break
                    key = f"http_{reply.status_code}"
                    outcome[key] = outcome.get(key, 0) + 1
                if time.monotonic() > deadline:
                    outcome["gave_up"] += 1
                    break
                # As the reporter does: Retry-After when given, else backoff with jitter.
                after = reply.headers.get("Retry-After") if reply is not None else None
                wait = float(after) if after and after.isdigit() else \
                    min(60.0, 0.5 * 2 ** min(attempt, 7))
                await asyncio.sleep(wait * (0.5 + rng.random() / 2))


async def push_all(args: argparse.Namespace, ports: list[int]) -> dict:
    sent: dict[int, dict[bytes, set[int]]] = {i: {} for i in range(args.images)}
    latencies: list[float] = []
    outcome = {"stored": 0, "duplicate": 0, "errors": 0, "gave_up": 0}
    limits = httpx.Limits(max_connections=args.connections,
                          max_keepalive_connections=args.connections)
    clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120,
                                 limits=limits) for port in ports]
    started = time.perf_counter()
    try:
        await asyncio.gather(*(
            reporter_task(n, args, clients, sent, latencies, outcome, random.Random(n))
            for n in range(args.reporters)))
    finally:
        for client in clients:
            await client.aclose()
    elapsed = time.perf_counter() - started
    return {"sent": sent, "latencies": latencies, "outcome": outcome, "elapsed": elapsed}


def check_unions(port: int, sent: dict[int, dict[bytes, set[int]]]) -> list[str]:
    problems = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for image, files in sent.items():
            reply = client.get("/v1/report", params={"image": f"app{image}:1.0"})
            if reply.status_code != 200:
                problems.append(f"app{image}:1.0: HTTP {reply.status_code}")
                continue
            union = reply.json()
            got = {p.encode("utf-8", "surrogateescape") for p in union["files"]}
            if got != set(files):
                problems.append(f"app{image}:1.0: {len(got ^ set(files))} paths differ")
            wrong = [p for p, users in files.items()
                     if union["file_details"][p.decode()]["workloads"] != len(users)]
            if wrong:
                problems.append(f"app{image}:1.0: {len(wrong)} files with wrong workload counts")
    return problems


def start_receiver(dsn: str, port: int, tokens: str, log: str) -> subprocess.Popen:
    handle = open(log, "ab")  # noqa: SIM115 (the child holds it)
    child = subprocess.Popen([sys.executable, "-m", "snoop.cli", "receive", "--listen",
                              f"127.0.0.1:{port}", "--db", dsn, "--tokens-file", tokens],
                             stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    handle.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return child
        except httpx.HTTPError:
            pass
        if child.poll() is not None:
            raise RuntimeError(f"receiver exited {child.returncode}; see {log}")
        time.sleep(0.3)
    child.kill()
    raise RuntimeError(f"receiver not up in 60 s; see {log}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reporters", type=int, default=1000)
    parser.add_argument("--deltas", type=int, default=10, help="per reporter")
    parser.add_argument("--files", type=int, default=40, help="per delta")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--image-files", type=int, default=2000, help="files per image")
    parser.add_argument("--repeat", type=float, default=0.05,
                        help="share of POSTs sent twice with one key")
    parser.add_argument("--connections", type=int, default=100, help="per receiver")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    server = start_server()
    children: list[subprocess.Popen] = []
    work = tempfile.mkdtemp(prefix="snoop-bench-recv-")
    try:
        dsn = server.new_database("bench")
        tokens = os.path.join(work, "tokens")
        with open(tokens, "w") as handle:
            handle.write(TOKEN + "\n")
        os.chmod(tokens, 0o600)
        ports = [free_port(), free_port()]
        for i, port in enumerate(ports):
            children.append(start_receiver(dsn, port, tokens, os.path.join(work, f"r{i}.log")))
        result = asyncio.run(push_all(args, ports))
        outcome, latencies, elapsed = result["outcome"], result["latencies"], result["elapsed"]
        problems = check_unions(ports[0], result["sent"])
        with psycopg.connect(dsn) as conn:
            db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        figures = {
            "reporters": args.reporters, "deltas_per_reporter": args.deltas,
            "files_per_delta": args.files, "images": args.images, "receivers": len(ports),
            "posts": len(latencies), "stored": outcome["stored"],
            "duplicates": outcome["duplicate"], "connection_errors": outcome["errors"],
            "gave_up": outcome["gave_up"],
            "other_replies": {k: v for k, v in outcome.items() if k.startswith("http_")},
            "seconds": round(elapsed, 2),
            "deltas_per_second": round(outcome["stored"] / elapsed, 1),
            "latency_p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
            "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "latency_mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else 0,
            "database_bytes": db_bytes,
            "union_equal": not problems,
        }
        print(f"{args.reporters} reporters x {args.deltas} deltas x {args.files} files, "
              f"{args.images} images, 2 receivers on one PostgreSQL")
        print(f"stored {figures['stored']} deltas in {figures['seconds']} s: "
              f"{figures['deltas_per_second']} deltas/s "
              f"(+{figures['duplicates']} repeats dropped by key)")
        print(f"POST latency: p50 {figures['latency_p50_ms']} ms, "
              f"p99 {figures['latency_p99_ms']} ms over {figures['posts']} POSTs "
              f"(answered 503, retried later: {outcome.get('http_503', 0)})")
        print(f"database size: {db_bytes / 1024 / 1024:.1f} MiB")
        print("union answered == union sent: " + ("yes" if not problems else
                                                  "NO: " + "; ".join(problems[:5])))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
        return 0 if not problems and not outcome["gave_up"] else 1
    finally:
        for child in children:
            child.terminate()
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        stop_server(server)


if __name__ == "__main__":
    sys.exit(main())
