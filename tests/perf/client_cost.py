"""What the load generator's client spends per request, by request path (lean, openai): a benchmark figure,
not a test. `python -m tests.perf.client_cost [--requests N]`, from the repository's root.

The fake worker (tests/unit/fake_server.py, no engine, replies as fast as read) runs in its own process, so
this process's CPU time (time.process_time) is the client's alone: `send()` for one NPC after another in one
greenlet, gevent's monkey patching on as under Locust. Requests are the harness-ceiling mixes' GPU-scale
classes: ambient, plain (7,800-token prompt, 70 tokens back), and dialogue, streamed (3,000-token prompt,
150 tokens). The prompt's making (`NPC.messages`) is timed apart: it is the bench's, whichever path sends."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from bench.load.client import connect, send  # noqa: E402
from bench.load.npc import NPC  # noqa: E402
from bench.spec import load_classes  # noqa: E402

SERVER = ("import time; from tests.unit.fake_server import FakeServer, FakeWorker; "
          "w = FakeServer(FakeWorker(reply_tokens=150, token_gap_s=0.0)).start(); print(w.url, flush=True); "
          "time.sleep(1e9)")
CASES = {"plain": ("ambient", (7800, 70)), "streamed 150": ("dialogue", (3000, 150))}
NPCS = 500


def measure(path: str, url: str, case: str, requests: int) -> tuple[float, float]:
    """(CPU-ms, wall-ms) per request."""
    cls = load_classes("gpu")[CASES[case][0]]
    client = connect(path, url + "/v1", "sk-fake", 60)
    npcs = [NPC(f"npc-{i}", random.Random(i), faction=i) for i in range(NPCS)]
    for i in range(20):  # warm: connections, imports, encoded prefixes of the first factions
        send(client, cls, npcs[i % NPCS], lengths=CASES[case][1])
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(requests):
        record, _ = send(client, cls, npcs[i % NPCS], lengths=CASES[case][1])
        assert record.outcome == "ok", record.error
    return ((time.process_time() - cpu) * 1000 / requests, (time.perf_counter() - wall) * 1000 / requests)


def prompt_cost(case: str, requests: int) -> float:
    cls = load_classes("gpu")[CASES[case][0]]
    npcs = [NPC(f"npc-{i}", random.Random(i), faction=i) for i in range(NPCS)]
    cpu = time.process_time()
    for i in range(requests):
        npcs[i % NPCS].messages(cls, CASES[case][1][0])
    return (time.process_time() - cpu) * 1000 / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500, help="per path and case")
    requests = parser.parse_args().requests
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        print(f"{requests} requests per row, one greenlet, fake worker in another process ({url})")
        print(f"{'case':14s} {'path':7s} {'CPU-ms/req':>10s} {'wall-ms/req':>11s}")
        for case in CASES:
            for path in ("openai", "lean"):
                cpu_ms, wall_ms = measure(path, url, case, requests)
                print(f"{case:14s} {path:7s} {cpu_ms:10.3f} {wall_ms:11.3f}", flush=True)
            print(f"{case:14s} {'(of which making the prompt, either path)':s} {prompt_cost(case, requests):.3f} CPU-ms")
    finally:
        server.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
