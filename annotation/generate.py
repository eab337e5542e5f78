"""`python -m annotation generate`: candidate answers for prompts, written in `push`'s input format.

The answers come from `align.judging.answers` (the judging module's generation code: a local
model with its own chat template, batched, or any OpenAI-compatible endpoint), several samples
per prompt and per model. Empty answers and exact repeats are dropped and counted; a prompt
left with fewer than two different answers cannot make a pair, so it is not written (counted).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from annotation.errors import AnnotationError
from annotation.logic.pairs import MAX_REPORTED_ERRORS, parse_prompt, read_input_rows


@dataclass(frozen=True)
class PromptToAnswer:
    prompt_id: Optional[str]
    prompt: list
    metadata: dict


def parse_prompts(raw_rows: Iterable[tuple]) -> List[PromptToAnswer]:
    errors, prompts, seen = [], [], {}
    for location, raw in raw_rows:
        try:
            if isinstance(raw, str):
                raise ValueError(raw)
            if not isinstance(raw, dict):
                raise ValueError("a row must be a JSON object")
            prompt = [dict(m) for m in parse_prompt(raw.get("prompt"))]
            metadata = raw.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise ValueError("field 'metadata' must be an object")
        except ValueError as error:
            errors.append(f"{location}: {error}")
            continue
        key = json.dumps(prompt, sort_keys=True)
        if key in seen:
            errors.append(f"{location}: field 'prompt': duplicate prompt (same as {seen[key]})")
            continue
        seen[key] = location
        prompt_id = raw.get("id")
        prompts.append(PromptToAnswer(None if prompt_id is None else str(prompt_id), prompt, metadata))
    if errors:
        raise AnnotationError(f"{len(errors)} bad prompt row(s):\n  " + "\n  ".join(errors[:MAX_REPORTED_ERRORS]))
    if not prompts:
        raise AnnotationError("the prompt file holds no rows")
    return prompts


def candidate_rows(prompts: Sequence[PromptToAnswer], answers_by_model: dict) -> tuple:
    """push's input rows from {model name: [[answers of prompt 0], ...]}; (rows, counts) (pure)."""
    counts = Counter()
    rows = []
    for index, prompt in enumerate(prompts):
        completions, seen = [], set()
        for model, answers in answers_by_model.items():
            for answer in answers[index]:
                if not answer.strip():
                    counts["empty_answers_dropped"] += 1
                elif answer.strip() in seen:
                    counts["repeated_answers_dropped"] += 1
                else:
                    seen.add(answer.strip())
                    completions.append({"model": model, "content": answer})
        if len(completions) < 2:
            counts["prompts_without_two_distinct_answers"] += 1
            continue
        row = {"prompt": prompt.prompt, "completions": completions, "metadata": prompt.metadata}
        if prompt.prompt_id is not None:
            row["id"] = prompt.prompt_id
        rows.append(row)
    counts["prompts_written"] = len(rows)
    return rows, counts


def generate_candidates(
    prompts_path: Path,
    out_path: Path,
    models: Sequence[str],
    base_url: Optional[str] = None,
    samples: int = 2,
    temperature: float = 0.8,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    tensor_parallel_size: Optional[int] = None,
) -> str:
    from align.judging.answers import EndpointBackend, generate_answers, local_backend, released

    if not Path(prompts_path).exists():
        raise AnnotationError(f"{prompts_path} does not exist")
    for flag, value, least in (("--samples", samples, 1), ("--max-new-tokens", max_new_tokens, 1),
                               ("--batch-size", batch_size, 1), ("--temperature", temperature, 0),
                               ("--tensor-parallel-size", tensor_parallel_size, 1)):
        if value is not None and not value >= least:
            raise AnnotationError(f"{flag} must be at least {least}, not {value}")
    if base_url and tensor_parallel_size is not None:
        raise AnnotationError("--tensor-parallel-size sizes a local vLLM engine; with --base-url the endpoint answers")
    prompts = parse_prompts(read_input_rows(prompts_path))
    answers_by_model, stats, engines = {}, Counter(), set()
    for model in models:
        if base_url:
            backend = EndpointBackend(base_url, model)
        elif Path(model).is_dir():
            # vLLM when installed, else transformers; tensor_parallel_size: the judge's own option, passed through
            backend = local_backend(model, batch_size=batch_size, tensor_parallel_size=tensor_parallel_size)
        else:
            raise AnnotationError(f"--model {model!r} is not a local model directory (pass --base-url for an endpoint)")
        if backend.name in answers_by_model:
            raise AnnotationError(f"two --model arguments are both called {backend.name!r}")
        with released(backend):  # a vLLM engine frees its processes and memory before the next model loads
            answers_by_model[backend.name] = generate_answers(
                [p.prompt for p in prompts],
                backend,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                n=samples,
                seed=seed,
            )
        stats["truncated_answers_kept"] += backend.stats["truncated"]
        engines.add(backend.engine)
    rows, counts = candidate_rows(prompts, answers_by_model)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    counts.update(stats)
    details = ", ".join(f"{name}: {value}" for name, value in sorted(counts.items()))
    return (f"{out_path}: {len(rows)} of {len(prompts)} prompts, {len(models)} model(s) x {samples} sample(s) ({details}); "
            f"answers from {', '.join(sorted(engines))}")
