"""Benchmark: push N preference pairs to a local Argilla and pull them back.

    .venv/bin/python bench/annotation_push_pull.py [--pairs 5000] [--database sqlite|postgresql]
        [--no-annotate] [--baseline] [--out DIR]

Starts `annotation serve`'s server (argilla-server, SQLite or its own PostgreSQL, Redis, the
embedded search engine) in a fresh temporary directory, then times, each on the same N pairs:
  push      create N records (parse, pair, bulk upserts of 500)
  re-push   the same input again: reads the dataset, finds every record unchanged, sends nothing
  queue     the annotator's queue query of the web UI (pending for this user, one record), 10
            times on the full dataset: the embedded search engine's latency, median and max
  annotate  one scripted annotator (annotation.simulate, NOT human) submits every record through
            the annotator's queue (a search per 100 records: the embedded engine under load)
  pull      read every record with its responses, resolve, write the preference dataset + card
and prints records per second for each, plus a JSON line for docs/benchmarks.md.
`--baseline` first pushes the same pairs to a server running argilla-server's stock bulk upload
(KLEAR_ARGILLA_STOCK_BULK=1: without `annotation/server/argilla_process/speedups.py`), and reports the
push speed-up as a ratio against it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import httpx

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


def timed(label: str, records: int, work) -> dict:
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    print(f"{label:<9} {records} records in {seconds:7.1f} s = {records / seconds:8.1f} records/s", flush=True)
    return {"step": label, "records": records, "seconds": round(seconds, 2), "records_per_s": round(records / seconds, 1), "result": result}


def queue_latency(api_url: str, username: str, password: str, dataset: str, workspace: str, repeats: int = 10) -> dict:
    """Seconds per queue query as the web UI makes it, logged in as the annotator."""
    with httpx.Client(base_url=api_url, timeout=120) as http:
        session = AnnotatorSession(http, username, password)
        dataset_id = session.dataset_id(dataset, workspace)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.pending_records(dataset_id, limit=1)
            seconds.append(time.perf_counter() - start)
    print(f"queue     {repeats} queries on the full dataset: median {statistics.median(seconds):.3f} s, max {max(seconds):.3f} s")
    return {"step": "queue", "median_s": round(statistics.median(seconds), 3), "max_s": round(max(seconds), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=None, help="keep the pulled dataset and summary.json here")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--no-annotate", action="store_true", help="skip the (slow) scripted annotation step")
    parser.add_argument("--baseline", action="store_true", help="also push to a server with argilla-server's stock bulk upload")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tmp.chmod(0o711)  # under root, PostgreSQL's own account must reach its cluster in here
        out = args.out or tmp / "out"
        out.mkdir(parents=True, exist_ok=True)
        source = tmp / "pairs.jsonl"
        write_input(source, args.pairs)

        def push(client, workspace):
            pairs, _ = make_pairs(parse_rows(read_input_rows(source)).rows)
            report = push_pairs(client, pairs, "bench", workspace, progress=False)
            return {"created": report.created, "updated": report.updated, "unchanged": report.unchanged}

        steps = []
        if args.baseline:
            os.environ["KLEAR_ARGILLA_STOCK_BULK"] = "1"
            config = ServeConfig(data_dir=tmp / "stock", port=free_loopback_port(), database=args.database)
            with running_server(config, log=lambda message: None) as server:
                client, _ = connect(config.data_dir)
                steps.append(timed("push (stock argilla-server bulk upload)", args.pairs,
                                   lambda: push(client, server.credentials.workspace)))
            del os.environ["KLEAR_ARGILLA_STOCK_BULK"]
        config = ServeConfig(data_dir=tmp / "argilla", port=free_loopback_port(), database=args.database)
        with running_server(config, log=lambda message: None) as server:
            client, address = connect(config.data_dir)
            workspace = server.credentials.workspace
            add_user(client, "bench-annotator", "bench-password", "annotator", workspace)
            steps += [timed("push", args.pairs, lambda: push(client, workspace)),
                      timed("re-push", args.pairs, lambda: push(client, workspace))]
            if args.baseline:
                steps.append({"step": "push speed-up vs stock", "ratio": round(steps[0]["seconds"] / steps[1]["seconds"], 2)})
                print(f"push speed-up vs argilla-server's stock bulk upload: {steps[-1]['ratio']}x")
            steps.append(queue_latency(address.api_url, "bench-annotator", "bench-password", "bench", workspace))
            if not args.no_annotate:
                annotator = ScriptedAnnotator("bench-annotator", "bench-password", noise=0.1)
                steps.append(timed("annotate", args.pairs, lambda: submit_scripted_responses(
                    address.api_url, "bench", workspace, [annotator])))
            steps.append(timed("pull", args.pairs, lambda: pull_preferences(
                client, "bench", workspace, out / "preferences", Policy())["counts"]))
        summary = {"pairs": args.pairs, "database": args.database, "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}", "steps": steps}
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
