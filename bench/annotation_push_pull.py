"""Benchmark: push N preference pairs to a local Argilla and pull them back.

    .venv/bin/python bench/annotation_push_pull.py [--pairs 5000] [--database sqlite|postgresql]
        [--no-annotate] [--baseline] [--rounds 1] [--warmup-rounds 0] [--out DIR]

Each run starts `annotation serve`'s server (argilla-server, SQLite or its own PostgreSQL, Redis, the
embedded search engine) in a fresh temporary directory, in its own worker process
(`harness.run_worker`), then times, each on the same N pairs:
  push      create N records (parse, pair, bulk upserts of 500)
  re-push   the same input again: reads the dataset, finds every record unchanged, sends nothing
  queue     the annotator's queue query of the web UI (pending for this user, one record), 10
            times on the full dataset: the embedded search engine's latency, median and max
  annotate  one scripted annotator (annotation.simulate, NOT human) submits every record through
            the annotator's queue (a search per 100 records: the embedded engine under load)
  pull      read every record with its responses, resolve, write the preference dataset + card
and prints records per second for each, plus a JSON line for docs/benchmarks.md.
`--baseline` adds a second variant, the same steps against a server running argilla-server's stock
bulk upload (KLEAR_ARGILLA_STOCK_BULK=1: without `annotation/server/argilla_process/speedups.py`); the
two alternate for --rounds rounds (bench/harness.py: order rotated each round, per-round ratios to the
stock server with median and spread). Only the push should differ: the other steps are the control.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx

import harness  # bench/ is on the path when a bench script runs
from align.common.ports import free_loopback_port
from annotation.argilla_adapter import AnnotatorSession
from annotation.connection import connect
from annotation.logic.pairs import make_pairs, parse_rows, read_input_rows
from annotation.logic.resolve import Policy
from annotation.pull import pull_preferences
from annotation.push import push_pairs
from annotation.server.lifecycle import ServeConfig, running_server
from annotation.simulate import ScriptedAnnotator, submit_scripted_responses
from annotation.users import add_user


def write_input(path: Path, pairs: int) -> None:
    with open(path, "w") as handle:
        for i in range(pairs):
            row = {
                "id": f"bench-{i}",
                "prompt": f"Question {i}: explain item {i} of the benchmark in a few sentences.",
                "completions": [
                    {"model": "model-x", "content": f"Answer x to question {i}. " + "Some detail. " * (i % 7 + 1)},
                    {"model": "model-y", "content": f"Answer y to question {i}. " + "Other detail. " * (i % 5 + 1)},
                ],
                "metadata": {"source": "bench", "category": f"c{i % 10}"},
            }
            handle.write(json.dumps(row) + "\n")


def timed(label: str, records: int, work) -> tuple[float, object]:
    """Seconds `work()` took, printed as records per second, and what it returned."""
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    print(f"{label:<9} {records} records in {seconds:7.1f} s = {records / seconds:8.1f} records/s", flush=True)
    return seconds, result


def queue_latency(api_url: str, username: str, password: str, dataset: str, workspace: str, repeats: int = 10) -> dict:
    """Seconds per queue query as the web UI makes it, logged in as the annotator: median and max."""
    with httpx.Client(base_url=api_url, timeout=120) as http:
        session = AnnotatorSession(http, username, password)
        dataset_id = session.dataset_id(dataset, workspace)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.pending_records(dataset_id, limit=1)
            seconds.append(time.perf_counter() - start)
    latency = harness.spread(seconds)
    print(f"queue     {repeats} queries on the full dataset: median {latency['median']:.3f} s, max {latency['max']:.3f} s")
    return {"queue_median_s": latency["median"], "queue_max_s": latency["max"]}


def one_server_run(source: Path, pairs: int, folder: Path, database: str, annotate: bool) -> dict:
    """Every step against one fresh server in `folder` (stock or not: the environment says), on the `pairs`
    pairs of `source`."""
    def push(client, workspace):
        pairs, _ = make_pairs(parse_rows(read_input_rows(source)).rows)
        report = push_pairs(client, pairs, "bench", workspace, progress=False)
        return {"created": report.created, "updated": report.updated, "unchanged": report.unchanged}

    config = ServeConfig(data_dir=folder / "argilla", port=free_loopback_port(), database=database)
    with running_server(config, log=lambda message: None) as server:
        client, address = connect(config.data_dir)
        workspace = server.credentials.workspace
        add_user(client, "bench-annotator", "bench-password", "annotator", workspace)
        result = {}
        for step in ("push", "re-push"):
            seconds, result[f"{step}_counts"] = timed(step, pairs, lambda: push(client, workspace))
            result[f"{step.replace('-', '')}_records_per_s"] = pairs / seconds
        result |= queue_latency(address.api_url, "bench-annotator", "bench-password", "bench", workspace)
        if annotate:
            annotator = ScriptedAnnotator("bench-annotator", "bench-password", noise=0.1)
            seconds, _ = timed("annotate", pairs, lambda: submit_scripted_responses(
                address.api_url, "bench", workspace, [annotator]))
            result["annotate_records_per_s"] = pairs / seconds
        seconds, result["pull_counts"] = timed("pull", pairs, lambda: pull_preferences(
            client, "bench", workspace, folder / "preferences", Policy())["counts"])
        result["pull_records_per_s"] = pairs / seconds
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=None, help="keep summary.json here")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--no-annotate", action="store_true", help="skip the (slow) scripted annotation step")
    parser.add_argument("--baseline", action="store_true", help="also run against argilla-server's stock bulk upload")
    harness.add_arguments(parser, rounds=1)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: one server's run in this folder
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)  # internal: the worker's input (--pairs of them)
    args = parser.parse_args()
    if args.worker:
        harness.emit(one_server_run(args.source, args.pairs, args.worker, args.database, annotate=not args.no_annotate))
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tmp.chmod(0o711)  # under root, PostgreSQL's own account must reach its cluster in here
        source = tmp / "pairs.jsonl"
        write_input(source, args.pairs)
        runs = itertools.count()  # a fresh server folder per run

        def variant(stock: bool):
            def run() -> dict:
                folder = tmp / f"run-{next(runs)}"
                folder.mkdir()
                folder.chmod(0o711)
                command = [sys.executable, __file__, "--worker", str(folder), "--source", str(source),
                           "--pairs", str(args.pairs), "--database", args.database]
                return harness.run_worker(command + ["--no-annotate"] * args.no_annotate,
                                          env={"KLEAR_ARGILLA_STOCK_BULK": "1"} if stock else None)
            return run

        variants = {"stock": variant(stock=True)} if args.baseline else {}
        metrics = {"push_records_per_s": "higher", "repush_records_per_s": "higher", "queue_median_s": "lower",
                   "pull_records_per_s": "higher"} | ({} if args.no_annotate else {"annotate_records_per_s": "higher"})
        comparison = harness.compare({**variants, "ours": variant(stock=False)},
                                     baseline="stock" if args.baseline else "ours", rounds=args.rounds,
                                     warmup_rounds=args.warmup_rounds, metrics=metrics)
    print(comparison.table())
    summary = {"pairs": args.pairs, "database": args.database,
               "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}", **comparison.as_dict()}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
