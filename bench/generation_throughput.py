"""Benchmark: answer generation for the judge's questions, vLLM against transformers, same model and prompts.

    .venv/bin/python bench/generation_throughput.py [--rounds 3] [--warmup-rounds 0] [--questions 80]
        [--max-new-tokens 64] [--batch-size 8]

Both engines answer MT-Bench's first turns (the questions the after-training hook answers) greedily,
through the judge's own backends, alternating for --rounds rounds (bench/harness.py: order rotated each
round, per-round vllm/transformers ratios with median and spread), each run its own subprocess
(`harness.run_worker`; one process each: VLLM_ENABLE_V1_MULTIPROCESSING=0 on CPU):
  transformers  align.judging.answers.TransformersBackend (batched generate, batch --batch-size), the baseline
  vllm          align.serve.vllm_backend.VLLMBackend (vLLM's offline engine, continuous batching)
The model is a small random Klear (the real architecture at reduced width: head_dim 64, 4 layers of
16 experts, 4 per token, 1 shared), fp32, written once to a temporary directory. Timed: loading
(transformers: the model; vLLM: engine start-up, model load and KV-cache set-up) and generation
(wall time of `generate` over all questions; generated tokens counted with the model's tokenizer).
A random model rarely stops early, so both produce about questions x max-new-tokens tokens.
Prints the harness's table, how many greedy answers the engines share per round, and a JSON line.
`one_run` and `identical_answers` also serve bench/serve_compile.py (vLLM compiled against eager).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import harness  # bench/ is on the path when a bench script runs

MODEL = dict(hidden_size=512, num_attention_heads=8, num_key_value_heads=2, head_dim=64, num_hidden_layers=4,
             num_experts=16, num_experts_per_tok=4, moe_intermediate_size=256, intermediate_size=1024)
METRICS = {"tokens_per_s": "higher", "load_s": "lower", "generate_s": "lower"}


def run_engine(engine: str, args) -> dict:
    from align.judging.answers import TransformersBackend
    from align.data.benchmarks import load_mt_bench

    questions = load_mt_bench().questions[: args.questions]
    prompts = [[{"role": "user", "content": q["turns"][0]}] for q in questions]
    started = time.perf_counter()
    if engine.startswith("vllm"):
        from align.serve.vllm_backend import VLLMBackend

        # "vllm": eager (VLLMBackend's CPU default); "vllm-compiled": torch.compile (bench/serve_compile.py)
        backend = VLLMBackend(args.model_dir, dtype="float32", max_model_len=2048,
                              enforce_eager=engine == "vllm")
    else:
        backend = TransformersBackend(args.model_dir, batch_size=args.batch_size, device="cpu", dtype="float32")
    loaded = time.perf_counter()
    answers = backend.generate(prompts, temperature=0.0, max_new_tokens=args.max_new_tokens, n=1, seed=0)
    generated = time.perf_counter()
    tokens = sum(len(backend.tokenizer(a[0], add_special_tokens=False)["input_ids"]) for a in answers)
    return {"engine": engine, "questions": len(prompts), "load_s": loaded - started, "generate_s": generated - loaded,
            "tokens": tokens, "tokens_per_s": tokens / (generated - loaded), "truncated": backend.stats["truncated"],
            "answers": [a[0] for a in answers]}


def one_run(engine: str, model_dir: Path, questions: int, max_new_tokens: int, batch_size: int = 8,
            env: dict | None = None) -> dict:
    """One engine's run in its own process (`env` added to the one vLLM's CPU build runs under)."""
    command = [sys.executable, __file__, "--engine", engine, "--model-dir", str(model_dir), "--questions", str(questions),
               "--max-new-tokens", str(max_new_tokens), "--batch-size", str(batch_size)]
    return harness.run_worker(command, env={"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
                                            "TOKENIZERS_PARALLELISM": "false", **(env or {})})


def identical_answers(comparison: harness.Comparison, variant: str) -> list[int]:
    """Per round, how many of `variant`'s greedy answers are the baseline's, word for word; the answers
    are taken out of the rounds (they would swamp the JSON line)."""
    same = []
    for r in comparison.rounds:
        answers = {name: result.pop("answers") for name, result in r["results"].items()}
        same.append(sum(a == b for a, b in zip(answers[variant], answers[comparison.baseline])))
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_arguments(parser, rounds=3)
    parser.add_argument("--questions", type=int, default=80)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="transformers' generation batch (the hook's default)")
    parser.add_argument("--engine", help=argparse.SUPPRESS)  # internal: run one engine, emit its measurement
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        harness.emit(run_engine(args.engine, args))
        return

    from align.models.klear.tiny import build_tiny_klear

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_klear(Path(tmp) / "klear-small", seed=0, **MODEL)
        runs = {engine: (lambda engine=engine: one_run(engine, model_dir, args.questions, args.max_new_tokens,
                                                       args.batch_size))
                for engine in ("transformers", "vllm")}
        comparison = harness.compare(runs, baseline="transformers", rounds=args.rounds,
                                     warmup_rounds=args.warmup_rounds, metrics=METRICS)
    same = identical_answers(comparison, "vllm")
    print(comparison.table())
    print(f"identical greedy answers, vllm vs transformers: {same} of {args.questions} per round")
    print(json.dumps({**comparison.as_dict(), "identical_answers": same, "questions": args.questions,
                      "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "model": MODEL}))


if __name__ == "__main__":
    main()
