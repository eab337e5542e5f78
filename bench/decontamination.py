"""Benchmark: decontamination and duplicate removal of 100,000 chat rows against MT-Bench and AlignBench.

    .venv/bin/python bench/decontamination.py [--rows 100000] [--sample 5000] [--rounds 3] [--warmup-rounds 0]
        [--compare contamination dedup] [--alignbench-dir ../shared/data/alignbench]

Rows are real text (../shared/data): half are Anthropic HH conversations, half pair an HH question with one of
the 4,960 MT-Bench model answers; every row is varied (a random word replaced, a random sentence appended) so
that no two are identical, and 1% of the rows carry a planted, edited benchmark question or reference answer.

Two comparisons, each through bench/harness.py (variants interleaved for --rounds rounds, order rotated each
round, per-round ratios to the baseline with median and spread); every run is its own subprocess
(`harness.run_worker`), so its peak resident memory is its own (psutil, sampled every 10 ms; the rows
themselves are built first, untimed, and counted in `data_rss_mb`). Figures are milliseconds of CPU and of
wall time per row (on a shared machine the CPU time is the steadier one), so that variants run on different
row counts compare:
  contamination  baseline `substring`: every normalised benchmark text of 13+ tokens searched in every
                 normalised message with `in` (what one writes first; whole-text matches only), on --sample rows;
                 against, on --rows rows:
                   ngram        align.data.contamination: tokenise every row and scan it against both benchmarks
                   ngram+exact  align.data.hygiene.clean_training_rows with decontaminate and dedup: exact
                   ngram+near   the same with dedup: near (MinHash LSH, threshold 0.8)
  dedup          baseline `lsh-default`: datasketch as its README uses it (sha1 per shingle, default LSH
                 balance), against `lsh-align` (align.data.dedup), both on --sample rows
Prints each comparison's table, what each variant found (round 1), and a JSON line.
"""

import argparse
import gzip
import json
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import harness  # bench/ is on the path when a bench script runs
from peak_rss import PeakRSS

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"


def build_rows(n: int, alignbench_dir: str | None, seed: int = 0) -> tuple[list[dict], list[tuple[int, str, str]]]:
    """`n` varied chat rows from real text, and the planted `(row, benchmark, question_id)`."""
    from align.data.contamination import alignbench_texts, mt_bench_texts, tokens
    from align.data.transcripts import TranscriptError, parse_transcript

    rng = random.Random(seed)
    conversations = []
    with gzip.open(SHARED / "hh_rlhf" / "harmless-base-test.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            try:
                conversations.append(parse_transcript(json.loads(line)["chosen"]))
            except TranscriptError:
                continue
    answers = [turn for path in sorted((SHARED / "mt_bench" / "model_answer").glob("*.jsonl"))
               for line in path.read_text().splitlines() for turn in json.loads(line)["choices"][0]["turns"]]
    words = [w for c in conversations[:200] for m in c for w in m["content"].split()]
    # planted: first turns and questions, and reference answers long enough to be checked (13+ tokens)
    bench = [t for t in mt_bench_texts() if t.part == "question turn 1" or (t.is_reference and len(tokens(t.text)) >= 13)]
    if alignbench_dir:
        bench += [t for t in alignbench_texts(alignbench_dir) if not t.is_reference or len(tokens(t.text)) >= 13]
    rows, planted = [], []
    for k in range(n):
        if k % 2:
            messages = [dict(m) for m in rng.choice(conversations)]
        else:
            messages = [{"role": "user", "content": rng.choice(conversations)[0]["content"]},
                        {"role": "assistant", "content": rng.choice(answers)}]
        target = messages[-1]
        tokens = target["content"].split(" ")
        tokens[rng.randrange(len(tokens))] = rng.choice(words)
        target["content"] = " ".join(tokens) + " " + " ".join(rng.choices(words, k=rng.randint(3, 12))) + "."
        if k % 100 == 50:
            text = rng.choice(bench)
            edited = rng.choice([str.upper, lambda s: s.replace(",", "，").replace(".", "。"), lambda s: "  ".join(s.split())])(text.text)
            if text.is_reference:
                messages[-1]["content"] = edited
            else:
                messages[0]["content"] = f"{messages[0]['content']}\n\nAlso: {edited}"
            planted.append((k, text.benchmark, text.question_id))
        rows.append({"messages": messages, "source": "hh" if k % 2 else "hh+mt_bench_answers",
                     "location": f"bench[{k}]"})
    return rows, planted


@contextmanager
def measured(result: dict):
    """The block's wall and CPU seconds and its peak resident memory, into `result`; yields its start."""
    with PeakRSS() as rss:
        start, cpu = time.perf_counter(), time.process_time()
        yield start
        result["seconds"] = time.perf_counter() - start
        result["cpu_seconds"] = time.process_time() - cpu
    result["peak_rss_mb"] = round(rss.peak / 2**20)


def measure(phase: str, args) -> dict:
    import psutil

    rows, planted = build_rows(args.rows, args.alignbench_dir)
    against = ["mt_bench"] + (["alignbench"] if args.alignbench_dir else [])
    result = {"phase": phase, "rows": len(rows), "data_rss_mb": round(psutil.Process().memory_info().rss / 2**20)}
    if phase == "ngram":
        from align.data.contamination import ContaminationIndex, load_eval_texts, scan_rows

        with measured(result) as start:
            index = ContaminationIndex(load_eval_texts(against, args.alignbench_dir))
            result["index_s"] = time.perf_counter() - start
            _, flagged = scan_rows(index, rows)
        found = {(e["row"], e["benchmark"], e["question_id"]) for e in flagged}
        result["planted"] = len(planted)
        result["planted_found"] = sum(1 for p in planted if p in found)
        result["rows_flagged"] = len({e["row"] for e in flagged})
    elif phase in ("ngram+exact", "ngram+near"):
        from datasets import Dataset

        from align.data.hygiene import DataHygiene, clean_training_rows
        from align.data.sources import DataReport

        dataset = Dataset.from_list(rows)
        recipe = DataHygiene(decontaminate=tuple(against), action="drop", alignbench_dir=args.alignbench_dir,
                             dedup=phase.split("+")[1], threshold=0.8)
        report = DataReport()
        with measured(result):
            kept = clean_training_rows(dataset, recipe, report)
        result["kept"] = len(kept)
        result["dropped"] = dict(report.dropped)
    elif phase == "substring":
        from align.data.contamination import load_eval_texts, tokens

        sample = rows[: args.sample]
        with measured(result):
            needles = [f" {' '.join(toks)} " for t in load_eval_texts(against, args.alignbench_dir)
                       if len(toks := tokens(t.text)) >= 13]
            hits = 0
            for row in sample:
                for message in row["messages"]:
                    haystack = f" {' '.join(tokens(message['content']))} "
                    hits += sum(1 for needle in needles if needle in haystack)
        result["rows"] = len(sample)
        result["hits"] = hits
    elif phase in ("lsh-default", "lsh-align"):
        from align.data.contamination import tokens

        sample = rows[: args.sample]
        with measured(result):
            if phase == "lsh-align":
                from align.data.dedup import find_duplicates

                found = find_duplicates([[("messages", tokens(m["content"])) for m in row["messages"]] for row in sample],
                                        [row["source"] for row in sample], threshold=0.8)
                result["dropped"] = len(sample) - len(found.keep)
            else:
                from datasketch import MinHash, MinHashLSH

                lsh, dropped = MinHashLSH(threshold=0.8, num_perm=128), 0
                for i, row in enumerate(sample):
                    toks = [t for m in row["messages"] for t in tokens(m["content"])]
                    minhash = MinHash(num_perm=128)
                    for j in range(max(1, len(toks) - 4)):
                        minhash.update(" ".join(toks[j:j + 5]).encode())
                    if lsh.query(minhash):
                        dropped += 1
                    else:
                        lsh.insert(i, minhash)
                result["dropped"] = dropped
        result["rows"] = len(sample)
    result["cpu_ms_per_row"] = 1000 * result["cpu_seconds"] / result["rows"]
    result["wall_ms_per_row"] = 1000 * result["seconds"] / result["rows"]
    return result


COMPARISONS = {"contamination": ("substring", "ngram", "ngram+exact", "ngram+near"),
               "dedup": ("lsh-default", "lsh-align")}  # the baseline first
FOUND = ("planted", "planted_found", "rows_flagged", "kept", "dropped", "hits")  # what a run reports finding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=5_000, help="rows for the two baselines and lsh-align")
    default_alignbench = SHARED / "alignbench"
    parser.add_argument("--alignbench-dir", default=str(default_alignbench) if default_alignbench.is_dir() else None)
    parser.add_argument("--compare", nargs="+", choices=list(COMPARISONS), default=list(COMPARISONS))
    harness.add_arguments(parser, rounds=3)
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one variant, emit its measurement
    args = parser.parse_args()
    if args.phase:
        harness.emit(measure(args.phase, args))
        return

    def one_run(phase: str):
        command = [sys.executable, __file__, "--phase", phase, "--rows", str(args.rows), "--sample", str(args.sample)]
        if args.alignbench_dir:
            command += ["--alignbench-dir", args.alignbench_dir]
        return lambda: harness.run_worker(command, cwd=REPO)

    summary = {"rows": args.rows, "sample": args.sample, "alignbench": bool(args.alignbench_dir)}
    for name in args.compare:
        baseline, *others = COMPARISONS[name]
        comparison = harness.compare({phase: one_run(phase) for phase in (baseline, *others)}, baseline=baseline,
                                     rounds=args.rounds, warmup_rounds=args.warmup_rounds,
                                     metrics={"cpu_ms_per_row": "lower", "wall_ms_per_row": "lower", "peak_rss_mb": "lower"})
        print(f"\n{name}: " + comparison.table())
        for phase, result in comparison.rounds[0]["results"].items():
            print(f"  {phase} (round 1): rows {result['rows']}, "
                  + ", ".join(f"{key} {result[key]}" for key in FOUND if key in result))
        summary[name] = comparison.as_dict()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
