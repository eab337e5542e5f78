"""How fast the judge pipeline itself is: the published MT-Bench models' answers, judged end to end, at
several concurrencies and from a full cache.

    .venv/bin/python bench/judging_throughput.py [--models 31] [--concurrency 1 8 32] [--rounds 3] [--warmup-rounds 0]
        [--answers ../shared/data/mt_bench/model_answer]

The judge is the scripted loopback server of the tests (tests/judging/scripted_judge.py), which
answers instantly: the numbers measure this toolkit's overhead (prompt building, HTTP client,
cache, rows, aggregation with bootstrap, report), not any judge model's speed. A real judge's
latency divides by the concurrency instead. The first --models models' answers (sorted by name;
80 questions x 2 turns each) are judged in single-answer mode, every run into a fresh output folder:
  c<N>    a fresh cache, --concurrency N (the first N given is the baseline)
  cached  the last concurrency, with a cache that one untimed run filled before the rounds: every
          judgment comes from the content-addressed cache, nothing is sent
The variants alternate for --rounds rounds (bench/harness.py: order rotated each round, per-round
ratios to the baseline with median and spread), in this process, against one judge server.
Prints the harness's table, the requests each variant sent, and a JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import harness  # bench/ is on the path when a bench script runs
from align.judging.config import JudgeConfig
from align.judging.judgments import JudgeRequest, judge_answers

ROOT = Path(__file__).resolve().parents[1]


def start_scripted_judge(directory: Path) -> tuple[subprocess.Popen, str]:
    port_file = directory / "port"
    process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "judging" / "scripted_judge.py"),
                                "--port-file", str(port_file)])
    while not (port_file.is_file() and port_file.read_text()):
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{port_file.read_text()}/v1"


def requests_served(base_url: str) -> int:
    return httpx.get(base_url.removesuffix("/v1") + "/stats").json()["requests"]


def judged(out: Path, request: JudgeRequest, base_url: str, concurrency: int, cache: Path | None = None) -> dict:
    """One judging run into `out` (its own cache unless `cache` is given): judgments per second, requests sent."""
    judge = JudgeConfig(base_url=base_url, model="scripted-judge", concurrency=concurrency)
    before = requests_served(base_url)
    start = time.perf_counter()
    judge_answers(out, request, judge, cache_dir=cache)
    seconds = time.perf_counter() - start
    judgments = len(request.models) * 80 * 2
    return {"judgments": judgments, "seconds": seconds, "judgments_per_s": judgments / seconds,
            "requests_sent": requests_served(base_url) - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=Path, default=ROOT.parent / "shared" / "data" / "mt_bench" / "model_answer")
    parser.add_argument("--models", type=int, default=31, help="judge the first N models' answers (sorted by name)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    harness.add_arguments(parser, rounds=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    models = tuple(sorted(path.stem for path in args.answers.glob("*.jsonl"))[: args.models])
    request = JudgeRequest(mt_bench_answers=args.answers, models=models)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        process, base_url = start_scripted_judge(tmp)
        try:
            runs = itertools.count()  # a fresh output folder per run
            cache = tmp / "filled-cache"
            filled = judged(tmp / "fill", request, base_url, args.concurrency[-1], cache)
            variants = {f"c{c}": (lambda c=c: judged(tmp / f"run-{next(runs)}", request, base_url, c))
                        for c in args.concurrency}
            variants["cached"] = lambda: judged(tmp / f"run-{next(runs)}", request, base_url, args.concurrency[-1], cache)
            comparison = harness.compare(variants, baseline=f"c{args.concurrency[0]}", rounds=args.rounds,
                                         warmup_rounds=args.warmup_rounds, metrics={"judgments_per_s": "higher"})
        finally:
            process.terminate()
            process.wait()
    print(f"{len(models)} models, {filled['judgments']} single-answer judgments per run; the cache was filled "
          f"by {filled['requests_sent']} requests")
    print(comparison.table())
    print("requests sent per run: " + ", ".join(
        f"{v} {sorted({r['results'][v]['requests_sent'] for r in comparison.rounds})}" for v in comparison.variants))
    print(json.dumps({**comparison.as_dict(), "models": models, "cache_fill": filled}))


if __name__ == "__main__":
    main()
