"""Answer the benchmarks: MT-Bench (two turns, FastChat's answer format) and AlignBench (THUDM's).

Sampling temperatures are each benchmark's own: FastChat's per-category `temperature_config`
for MT-Bench, AlignBench's config/temperature.json (default 0.7) for AlignBench. Questions that
share a temperature are generated together in batches. MT-Bench's second turn continues the
conversation with the model's own first answer (per sample when n > 1).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from pathlib import Path

from .answers import AnswerBackend, generate_answers
from .benchmarks import AlignBench, MTBench, mt_bench_temperature
from .rundir import write_jsonl_atomic

logger = logging.getLogger("align.judging")
# FastChat's default --max-new-token; THUDM's API call sets none, so AlignBench gets more room.
DEFAULT_MAX_NEW_TOKENS = {"mt_bench": 1024, "alignbench": 2048}


def _by_temperature(questions: list[dict], temperature_of) -> dict[float, list[dict]]:
    groups: dict[float, list[dict]] = defaultdict(list)
    for question in questions:
        groups[temperature_of(question["category"])].append(question)
    return groups


def mt_bench_answer_rows(
    questions: list[dict], backend: AnswerBackend, model_id: str, *, max_new_tokens: int, n: int = 1, seed: int = 0
) -> list[dict]:
    """FastChat answer rows: {question_id, answer_id, model_id, choices: [{index, turns: [a1, a2]}], tstamp}."""
    turns: dict[int, list[list[str]]] = {}  # question id -> per sample [a1, a2]
    for temperature, group in _by_temperature(questions, mt_bench_temperature).items():
        first = generate_answers(
            [[{"role": "user", "content": q["turns"][0]}] for q in group],
            backend, temperature=temperature, max_new_tokens=max_new_tokens, n=n, seed=seed,
        )
        for sample in range(n):
            conversations = [
                [
                    {"role": "user", "content": q["turns"][0]},
                    {"role": "assistant", "content": first[i][sample]},
                    {"role": "user", "content": q["turns"][1]},
                ]
                for i, q in enumerate(group)
            ]
            second = generate_answers(conversations, backend, temperature=temperature,
                                      max_new_tokens=max_new_tokens, n=1, seed=seed + sample)
            for i, question in enumerate(group):
                turns.setdefault(question["question_id"], []).append([first[i][sample], second[i][0]])
    return [
        {
            "question_id": q["question_id"],
            "answer_id": uuid.uuid4().hex,
            "model_id": model_id,
            "choices": [{"index": k, "turns": t} for k, t in enumerate(turns[q["question_id"]])],
            "tstamp": time.time(),
        }
        for q in questions
    ]


def alignbench_answer_rows(
    bench: AlignBench, questions: list[dict], backend: AnswerBackend, model_id: str, *, max_new_tokens: int, seed: int = 0
) -> list[dict]:
    """THUDM get_answers.py rows: the question's fields plus model_id, answer_id and answer."""
    answers: dict[int, str] = {}
    for temperature, group in _by_temperature(questions, bench.temperature).items():
        outputs = generate_answers([[{"role": "user", "content": q["question"]}] for q in group], backend,
                                   temperature=temperature, max_new_tokens=max_new_tokens, n=1, seed=seed)
        for question, output in zip(group, outputs):
            answers[question["question_id"]] = output[0]
    return [
        {**q, "model_id": model_id, "answer_id": f"{q['question_id']}_{model_id}", "answer": answers[q["question_id"]]}
        for q in questions
    ]


def write_answers(path: Path, rows: list[dict], stats: dict) -> Path:
    """The answer file, plus <file>.stats.json with the generation counts (truncated, empty)."""
    write_jsonl_atomic(path, rows)
    path.with_suffix(".stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    if stats.get("truncated") or stats.get("empty"):
        logger.warning("%s: %d answer(s) hit max_new_tokens, %d empty (kept, counted in %s)",
                       path, stats.get("truncated", 0), stats.get("empty", 0), path.with_suffix(".stats.json").name)
    return path


def answer_benchmark(
    benchmark: str,
    bench: MTBench | AlignBench,
    questions: list[dict],
    backend: AnswerBackend,
    out_dir: Path,
    model_id: str,
    *,
    max_new_tokens: int | None = None,
    n: int = 1,
    seed: int = 0,
) -> Path:
    """Generate and write DIR/answers/<benchmark>/<model_id>.jsonl; returns its path."""
    max_new_tokens = max_new_tokens or DEFAULT_MAX_NEW_TOKENS[benchmark]
    before = dict(backend.stats)
    if benchmark == "mt_bench":
        rows = mt_bench_answer_rows(questions, backend, model_id, max_new_tokens=max_new_tokens, n=n, seed=seed)
    else:
        rows = alignbench_answer_rows(bench, questions, backend, model_id, max_new_tokens=max_new_tokens, seed=seed)
    stats = {key: value - before.get(key, 0) for key, value in backend.stats.items()}
    stats.update(max_new_tokens=max_new_tokens, n=n, questions=len(questions))
    return write_answers(out_dir / "answers" / benchmark / f"{model_id}.jsonl", rows, stats)
