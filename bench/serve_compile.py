"""Benchmark: vLLM with its default torch.compile against `--enforce-eager`, Klear on the CPU build.

    .venv/bin/python bench/serve_compile.py [--rounds 3] [--questions 16] [--max-new-tokens 64]

Each round starts both engines, in alternating order, each in its own subprocess with a fresh,
empty vLLM cache (VLLM_CACHE_ROOT: every compiled start pays the compilation, as a first
`python -m align.serve` does), through the judge's engine `align.serve.vllm_backend.VLLMBackend`
(offline `vllm.LLM`, one process: VLLM_ENABLE_V1_MULTIPROCESSING=0); each run is
`bench/generation_throughput.py --engine vllm|vllm-compiled`. Timed: start-up (engine, model load,
KV cache, compile warm-up) and generation (MT-Bench first turns, greedy; tokens counted with the
model's tokenizer). The model: that script's small random Klear (head_dim 64, 4 layers of 16
experts, 4 per token), fp32, with `output_router_logits: true` as a trained checkpoint's config has
it (what used to stop the compiled path). Reports per round and the median
and spread (min-max) of compiled/eager ratios; the greedy answers of the two modes are compared.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from generation_throughput import MODEL

ENGINES = {"eager": "vllm", "compiled": "vllm-compiled"}  # generation_throughput.py's engines


def one_run(mode: str, model_dir: Path, args) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
               "TOKENIZERS_PARALLELISM": "false", "VLLM_CACHE_ROOT": cache}
        command = [sys.executable, str(Path(__file__).with_name("generation_throughput.py")),
                   "--engine", ENGINES[mode], "--model-dir", str(model_dir),
                   "--questions", str(args.questions), "--max-new-tokens", str(args.max_new_tokens)]
        output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])


def summary(ratios: list[float]) -> str:
    return f"median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    from align.models.klear.tiny import build_tiny_klear

    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_klear(Path(tmp) / "klear-small", seed=0, output_router_logits=True, **MODEL)
        for index in range(args.rounds):
            order = ("eager", "compiled") if index % 2 == 0 else ("compiled", "eager")
            rounds.append({mode: one_run(mode, model_dir, args) for mode in order})
    print(f"{'round':<7}{'mode':<10}{'start-up s':>11}{'generate s':>12}{'tokens':>8}{'tokens/s':>10}")
    for index, result in enumerate(rounds):
        for mode in ("eager", "compiled"):
            r = result[mode]
            print(f"{index:<7}{mode:<10}{r['load_s']:>11.1f}{r['generate_s']:>12.2f}{r['tokens']:>8}{r['tokens_per_s']:>10.1f}")
    decode = [r["compiled"]["tokens_per_s"] / r["eager"]["tokens_per_s"] for r in rounds]
    startup = [r["compiled"]["load_s"] / r["eager"]["load_s"] for r in rounds]
    same = [sum(a == b for a, b in zip(r["compiled"]["answers"], r["eager"]["answers"])) for r in rounds]
    print(f"compiled / eager generation throughput: {summary(decode)}")
    print(f"compiled / eager start-up time:         {summary(startup)}")
    print(f"identical greedy answers, compiled vs eager: {same} of {args.questions} per round")
    for r in rounds:
        for mode in r.values():
            mode.pop("answers")
    print(json.dumps({"rounds": rounds, "decode_ratio": decode, "startup_ratio": startup, "identical_answers": same,
                      "questions": args.questions, "max_new_tokens": args.max_new_tokens, "model": MODEL}))


if __name__ == "__main__":
    main()
