"""Benchmark: answer generation for the judge's questions, vLLM against transformers, same model and prompts.

    .venv/bin/python bench/generation_throughput.py [--questions 80] [--max-new-tokens 64]

Both engines answer MT-Bench's first turns (the questions the after-training hook answers) greedily,
each in its own subprocess (one process each: VLLM_ENABLE_V1_MULTIPROCESSING=0 on CPU), through the
judge's own backends:
  transformers  align.judging.answers.TransformersBackend (batched generate, batch --batch-size)
  vllm          align.serve.vllm_backend.VLLMBackend (vLLM's offline engine, continuous batching)
The model is a small random Klear (the real architecture at reduced width: head_dim 64, 4 layers of
16 experts, 4 per token, 1 shared), fp32, written once to a temporary directory. Timed: loading
(transformers: the model; vLLM: engine start-up, model load and KV-cache set-up) and generation
(wall time of `generate` over all questions; generated tokens counted with the model's tokenizer).
A random model rarely stops early, so both produce about questions x max-new-tokens tokens.
Prints a table and a JSON line.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = dict(hidden_size=512, num_attention_heads=8, num_key_value_heads=2, head_dim=64, num_hidden_layers=4,
             num_experts=16, num_experts_per_tok=4, moe_intermediate_size=256, intermediate_size=1024)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=80)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="transformers' generation batch (the hook's default)")
    parser.add_argument("--engine", help=argparse.SUPPRESS)  # internal: run one engine, print its JSON
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        print("RESULT " + json.dumps(run_engine(args.engine, args)), flush=True)
        return

    from align.models.klear.tiny import build_tiny_klear

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_klear(Path(tmp) / "klear-small", seed=0, **MODEL)
        env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        for engine in ("transformers", "vllm"):
            command = [sys.executable, __file__, "--engine", engine, "--model-dir", str(model_dir),
                       "--questions", str(args.questions), "--max-new-tokens", str(args.max_new_tokens),
                       "--batch-size", str(args.batch_size)]
            output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
            results[engine] = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
    same = sum(a == b for a, b in zip(results["vllm"].pop("answers"), results["transformers"].pop("answers")))
    print(f"{'engine':<14}{'load s':>9}{'generate s':>12}{'tokens':>8}{'tokens/s':>10}")
    for r in results.values():
        print(f"{r['engine']:<14}{r['load_s']:>9.1f}{r['generate_s']:>12.1f}{r['tokens']:>8}{r['tokens_per_s']:>10.1f}")
    speedup = results["vllm"]["tokens_per_s"] / results["transformers"]["tokens_per_s"]
    print(f"vLLM / transformers generation throughput: {speedup:.2f}x; identical greedy answers: {same} of {args.questions}")
    print(json.dumps({"results": results, "vllm_over_transformers": round(speedup, 3), "identical_answers": same,
                      "questions": args.questions, "max_new_tokens": args.max_new_tokens, "model": MODEL}))


if __name__ == "__main__":
    main()
