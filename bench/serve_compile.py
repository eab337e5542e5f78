"""Benchmark: vLLM with its default torch.compile against `--enforce-eager`, Klear on the CPU build.

    .venv/bin/python bench/serve_compile.py [--rounds 3] [--warmup-rounds 0] [--questions 16] [--max-new-tokens 64]

Each round (bench/harness.py: interleaved, order rotated each round) starts both engines, each in its own subprocess with a fresh,
empty vLLM cache (VLLM_CACHE_ROOT: every compiled start pays the compilation, as a first
`python -m align.serve` does), through the judge's engine `align.serve.vllm_backend.VLLMBackend`
(offline `vllm.LLM`, one process: VLLM_ENABLE_V1_MULTIPROCESSING=0); each run is
`bench/generation_throughput.py --engine vllm|vllm-compiled`. Timed: start-up (engine, model load,
KV cache, compile warm-up) and generation (MT-Bench first turns, greedy; tokens counted with the
model's tokenizer). The model: that script's small random Klear (head_dim 64, 4 layers of 16
experts, 4 per token), fp32, with `output_router_logits: true` as a trained checkpoint's config has
it (what used to stop the compiled path). Prints the harness's table (medians, spreads, per-round
compiled/eager ratios, load averages); the greedy answers of the two modes are compared per round.
"""

import argparse
import json
import tempfile
from pathlib import Path

import harness  # bench/ is on the path when a bench script runs
from generation_throughput import METRICS, MODEL, identical_answers, one_run as engine_run

ENGINES = {"eager": "vllm", "compiled": "vllm-compiled"}  # generation_throughput.py's engines


def one_run(mode: str, model_dir: Path, args) -> dict:
    with tempfile.TemporaryDirectory() as cache:  # an empty vLLM cache: every compiled start compiles
        return engine_run(ENGINES[mode], model_dir, args.questions, args.max_new_tokens, env={"VLLM_CACHE_ROOT": cache})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_arguments(parser, rounds=3)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    from align.models.klear.tiny import build_tiny_klear

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_klear(Path(tmp) / "klear-small", seed=0, output_router_logits=True, **MODEL)
        comparison = harness.compare({mode: (lambda mode=mode: one_run(mode, model_dir, args)) for mode in ENGINES},
                                     baseline="eager", rounds=args.rounds, warmup_rounds=args.warmup_rounds,
                                     metrics=METRICS)
    same = identical_answers(comparison, "compiled")
    print(comparison.table())
    print(f"identical greedy answers, compiled vs eager: {same} of {args.questions} per round")
    print(json.dumps({**comparison.as_dict(), "identical_answers": same, "questions": args.questions,
                      "max_new_tokens": args.max_new_tokens, "model": MODEL}))

if __name__ == "__main__":
    main()
