"""How fast the judge pipeline itself is: the 31 published MT-Bench models' answers, judged end to end.

    .venv/bin/python bench/judging_throughput.py --answers ../shared/data/mt_bench/model_answer

The judge is the scripted loopback server of the tests (tests/judging/scripted_judge.py), which
answers instantly: the numbers measure this toolkit's overhead (prompt building, HTTP client,
cache, rows, aggregation with bootstrap, report), not any judge model's speed. A real judge's
latency divides by the concurrency instead. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

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


def timed_run(out: Path, answers: Path, base_url: str, concurrency: int) -> tuple[float, int]:
    judge = JudgeConfig(base_url=base_url, model="scripted-judge", concurrency=concurrency)
    before = requests_served(base_url)
    start = time.perf_counter()
    judge_answers(out, JudgeRequest(mt_bench_answers=answers), judge)
    return time.perf_counter() - start, requests_served(base_url) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=Path, default=ROOT.parent / "shared" / "data" / "mt_bench" / "model_answer")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    models = len(list(args.answers.glob("*.jsonl")))
    judgments = models * 80 * 2
    with tempfile.TemporaryDirectory() as tmp:
        process, base_url = start_scripted_judge(Path(tmp))
        try:
            print(f"{models} models, {judgments} single-answer judgments; {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs, {platform.machine()}")
            print("| run | concurrency | wall s | judgments/s | requests sent |")
            print("|---|---|---|---|---|")
            for concurrency in args.concurrency:
                out = Path(tmp) / f"c{concurrency}"
                seconds, sent = timed_run(out, args.answers, base_url, concurrency)
                print(f"| fresh cache | {concurrency} | {seconds:.1f} | {judgments / seconds:.0f} | {sent} |")
            seconds, sent = timed_run(out, args.answers, base_url, args.concurrency[-1])
            print(f"| re-run, all cached | {args.concurrency[-1]} | {seconds:.1f} | {judgments / seconds:.0f} | {sent} |")
        finally:
            process.terminate()


if __name__ == "__main__":
    main()
