"""Answer generation: the benchmarks' questions in, FastChat / THUDM answer files out.

Two layers, one module:

1. `generate_answers(conversations, backend, temperature=, max_new_tokens=, n=, seed=)` -> n answers
   per conversation. The backend is where answers come from; each implements one method,

       backend.generate(conversations, *, temperature, max_new_tokens, n, seed) -> list[list[str]]

   plus `name` (the default model name in answer files) and `stats` (a Counter: prompts, answers,
   truncated = stopped at max_new_tokens, empty). `TransformersBackend` decodes a local model
   directory (Klear included), `EndpointBackend` asks any OpenAI-compatible endpoint. Another
   local engine (vLLM, its own module) registers in `LOCAL_ENGINES` and is built by `local_backend`.

2. `answer_benchmark(...)` answers MT-Bench (two turns; the second continues the conversation
   with the model's own first answer, per sample when n > 1) or AlignBench with each benchmark's
   own sampling temperatures (FastChat's per-category `temperature_config`, AlignBench's
   config/temperature.json) and writes DIR/answers/<benchmark>/<model>.jsonl plus its .stats.json.

Used by the judge commands and by `annotation generate`:

    from align.judging.answers import TransformersBackend, EndpointBackend, generate_answers
    backend = TransformersBackend("outputs/sft")        # or EndpointBackend(base_url, model)
    answers = generate_answers([[{"role": "user", "content": "Hi"}]], backend,
                               temperature=0.7, max_new_tokens=512, n=2)   # -> [["...", "..."]]

Each conversation is formatted with the model's own chat template (add_generation_prompt=True).
A temperature below 1e-4 means greedy decoding, as in FastChat; n greedy answers are then
identical, and the local backend decodes once and repeats the answer. Answers that stop at
max_new_tokens are kept and counted in `stats["truncated"]`, never dropped.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from align.data.benchmarks import AlignBench, MTBench, mt_bench_temperature
from .client import create_with_backoff, make_openai_client
from .config import LOCAL_ENGINES, check_base_url
from align.common.files import write_jsonl

logger = logging.getLogger("align.judging")
Messages = list[dict[str, str]]
GREEDY_BELOW = 1e-4
# FastChat's default --max-new-token; THUDM's API call sets none, so AlignBench gets more room.
DEFAULT_MAX_NEW_TOKENS = {"mt_bench": 1024, "alignbench": 2048}
ANSWER_ENGINE_ENV = "ALIGN_ANSWER_ENGINE"


class AnswerBackend(Protocol):
    name: str
    stats: Counter

    def generate(
        self, prompts: list[Messages], *, temperature: float, max_new_tokens: int, n: int, seed: int
    ) -> list[list[str]]: ...


def local_backend(model_dir: str | Path, *, engine: str = "auto", batch_size: int = 8,
                  tensor_parallel_size: int | None = None) -> AnswerBackend:
    """The backend of a local engine (see LOCAL_ENGINES) for a model directory. `tensor_parallel_size`
    sizes vLLM's engine (None: its default); transformers answers on one device and refuses more."""
    if engine not in LOCAL_ENGINES:
        raise ValueError(f"unknown answer engine {engine!r}; known: {sorted(LOCAL_ENGINES)}")
    options = {} if tensor_parallel_size is None else {"tensor_parallel_size": tensor_parallel_size}
    if engine == "transformers" and options:
        if tensor_parallel_size > 1:
            raise ValueError(f"tensor parallel size {tensor_parallel_size} needs the vLLM engine; "
                             "transformers answers on one device")
        options = {}
    module_name, class_name = LOCAL_ENGINES[engine].split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    return backend_class(model_dir, batch_size=batch_size, **options)


def resolve_auto_engine(model_dir: str | Path | None, *, config: dict | None = None) -> tuple[str, str]:
    """(engine, why) for "auto": $ALIGN_ANSWER_ENGINE when set, else vLLM when it can run the model here
    (given by its directory, or its config before one is saved; with neither: when vLLM is installed),
    else transformers."""
    from align.serve.environment import vllm_unsupported

    if os.environ.get(ANSWER_ENGINE_ENV):
        engine = os.environ[ANSWER_ENGINE_ENV]
        reason = f"{ANSWER_ENGINE_ENV}={engine}"
    else:
        reason = vllm_unsupported(model_dir, config=config)
        engine, reason = ("transformers", reason) if reason else ("vllm", "vLLM is installed")
    if engine not in LOCAL_ENGINES or engine == "auto":
        raise ValueError(f"{ANSWER_ENGINE_ENV}={engine!r}: expected one of {sorted(set(LOCAL_ENGINES) - {'auto'})}")
    return engine, reason


def auto_backend(model_dir: str | Path, *, batch_size: int = 8, tensor_parallel_size: int | None = None) -> AnswerBackend:
    """The engine `resolve_auto_engine` picks; says which, and why."""
    engine, reason = resolve_auto_engine(model_dir)
    logger.warning("answering with %s (%s)", engine, reason)
    return local_backend(model_dir, engine=engine, batch_size=batch_size, tensor_parallel_size=tensor_parallel_size)


@contextmanager
def released(backend: AnswerBackend):
    """`with released(local_backend(...)) as backend:` closes it on the way out, errors included: a vLLM
    engine then stops its processes and frees its memory (GPUs included) before anything else runs."""
    try:
        yield backend
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()


def generate_answers(
    prompts: list[Messages],
    backend: AnswerBackend,
    *,
    temperature: float,
    max_new_tokens: int,
    n: int = 1,
    seed: int = 0,
) -> list[list[str]]:
    """n answers for each conversation in `prompts` (a list of lists of {"role", "content"} messages).

    Returns one list of n strings per conversation, in order. `temperature` < 1e-4 decodes
    greedily. `seed` makes sampling repeatable with the local backend (and is sent to endpoints,
    which may ignore it). Truncated and empty answers are counted in `backend.stats`.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    for index, messages in enumerate(prompts):
        if not messages or any(not {"role", "content"} <= set(m) for m in messages):
            raise ValueError(f"prompt {index}: expected a non-empty list of {{'role', 'content'}} messages")
    if not prompts:
        return []
    return backend.generate(prompts, temperature=temperature, max_new_tokens=max_new_tokens, n=n, seed=seed)


class TransformersBackend:
    """A local model directory (Klear included: `import align` registers it), batched, left-padded."""

    engine = "transformers"

    def __init__(self, model_dir: str | Path, *, batch_size: int = 8, device: str | None = None, dtype: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        import align  # noqa: F401  (registers Klear with the Auto classes)

        self.name = Path(model_dir).name
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"  # generation continues from the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(self.device).eval()
        # A checkpoint saved by training keeps the trainer's output_router_logits=True (the aux loss); generate
        # would then compute that loss over the cached steps and fail on padded batches. Answers need no router logits.
        if hasattr(self.model.config, "output_router_logits"):
            self.model.config.output_router_logits = False
        eos = self.model.generation_config.eos_token_id
        eos = list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
        self.stop_ids = sorted((set(eos) | {self.tokenizer.eos_token_id}) - {None})
        self.stats: Counter = Counter()

    def _generate_batch(self, texts: list[str], *, temperature: float, max_new_tokens: int, samples: int) -> list[list[str]]:
        import torch

        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling = temperature >= GREEDY_BELOW
        kwargs = {"do_sample": True, "temperature": temperature} if sampling else {"do_sample": False}
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                num_return_sequences=samples,
                eos_token_id=self.stop_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                **kwargs,
            )
        new_tokens = output[:, encoded["input_ids"].shape[1]:]
        answers = []
        for sequence in new_tokens.tolist():
            stopped = any(token in self.stop_ids for token in sequence)
            self.stats["truncated"] += not stopped and len(sequence) >= max_new_tokens
            if stopped:
                sequence = sequence[: min(sequence.index(t) for t in self.stop_ids if t in sequence)]
            answers.append(self.tokenizer.decode(sequence, skip_special_tokens=True).strip())
        return [answers[i * samples:(i + 1) * samples] for i in range(len(texts))]

    def generate(self, prompts: list[Messages], *, temperature: float, max_new_tokens: int, n: int, seed: int) -> list[list[str]]:
        import torch

        texts = [self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
        # Similar lengths batch together (less padding); results go back to input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        samples = n if temperature >= GREEDY_BELOW else 1
        results: list[list[str]] = [[] for _ in texts]
        torch.manual_seed(seed)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            outputs = self._generate_batch([texts[i] for i in batch], temperature=temperature,
                                           max_new_tokens=max_new_tokens, samples=samples)
            for index, answers in zip(batch, outputs):
                results[index] = answers if samples == n else answers * n
        self.stats["prompts"] += len(prompts)
        self.stats["answers"] += len(prompts) * n
        self.stats["empty"] += sum(1 for answers in results for answer in answers if not answer)
        return results


class EndpointBackend:
    """Any OpenAI-compatible chat endpoint; n answers are n requests (not every server accepts `n`)."""

    engine = "endpoint"

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, concurrency: int = 4,
                 timeout_s: float = 600.0, api_retries: int = 6):
        check_base_url(base_url, "answer endpoint")
        self.name = model
        self.model = model
        self.concurrency = concurrency
        self.api_retries = api_retries
        self._client = make_openai_client(base_url, api_key, timeout_s)
        self._lock = threading.Lock()
        self.stats: Counter = Counter()

    def _one(self, messages: Messages, temperature: float, max_new_tokens: int, seed: int) -> str:
        request = {"model": self.model, "messages": messages, "temperature": temperature,
                   "max_tokens": max_new_tokens, "seed": seed}
        response = create_with_backoff(self._client, request, retries=self.api_retries, base_s=1.0, max_s=60.0,
                                       on_retry=lambda reason: self._count("api_retries"))
        choice = response.choices[0]
        self._count("truncated", choice.finish_reason == "length")
        return (choice.message.content or "").strip()

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.stats[name] += amount

    def generate(self, prompts: list[Messages], *, temperature: float, max_new_tokens: int, n: int, seed: int) -> list[list[str]]:
        jobs = [(i, k) for i in range(len(prompts)) for k in range(n)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            outputs = list(pool.map(lambda job: self._one(prompts[job[0]], temperature, max_new_tokens, seed + job[1]), jobs))
        results = [outputs[i * n:(i + 1) * n] for i in range(len(prompts))]
        self.stats["prompts"] += len(prompts)
        self.stats["answers"] += len(jobs)
        self.stats["empty"] += sum(1 for answer in outputs if not answer)
        return results


# ----- the benchmarks -----


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
    write_jsonl(path, rows)
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
    stats.update(max_new_tokens=max_new_tokens, n=n, questions=len(questions), engine=getattr(backend, "engine", None))
    return write_answers(out_dir / "answers" / benchmark / f"{model_id}.jsonl", rows, stats)
