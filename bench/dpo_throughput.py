"""Benchmark: align.dpo's trainer against stock TRL DPOTrainer, same model, data, batch and lengths.

    .venv/bin/python bench/dpo_throughput.py [--rounds 3] [--steps 8] [--batch 4] [--pairs 256]
    python3 bench/dpo_throughput.py --device cuda --bf16      # on a GPU (bench/gpu/run.sh does this)

Every run is its own subprocess (so peak memory is each one's own), one process, CPU, fp32; the two
variants alternate for --rounds rounds (bench/harness.py: order rotated, ratios taken within a round):
  trl    trl.DPOTrainer with its defaults (padded batches; fused LM head over every position)
  align  align.dpo's KlearDPOTrainer (padding-free packed pairs, prompt computed once,
         LM head on completion tokens only), otherwise the same DPOConfig
The model is a small random Klear (the real architecture at reduced width: 4 layers, 16 experts,
4 per token, a 32k vocabulary so that the LM head weighs what it weighs in practice); the pairs have
a realistic spread of prompt and answer lengths (log-normal). Throughput counts the tokens of the
two padded-free sequences of every pair (prompt + chosen, prompt + rejected), identical for both,
over the steps after a warm-up; peak memory is the rise of the process's resident memory during
training. Prints medians, spreads and per-round ratios, then a JSON line.
"""

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import harness  # bench/ is on the path when a bench script runs
from peak_rss import PeakRSS

WORDS = ("the a capital city river mountain count number answer question model expert token route "
         "train prefer chosen rejected prompt reply explain short long because therefore").split()


def lognormal_length(rng: random.Random, median: int, low: int, high: int) -> int:
    return max(low, min(high, int(rng.lognormvariate(0, 0.8) * median)))


def synthetic_pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)

    def text(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words))

    return [
        {
            "prompt": [{"role": "user", "content": text(lognormal_length(rng, 40, 8, 240))}],
            "chosen": [{"role": "assistant", "content": text(lognormal_length(rng, 30, 4, 160))}],
            "rejected": [{"role": "assistant", "content": text(lognormal_length(rng, 30, 4, 160))}],
        }
        for _ in range(n)
    ]


def run_variant(variant: str, args) -> dict:
    import torch
    from transformers import TrainerCallback
    from trl import DPOTrainer

    import align  # noqa: F401
    from align.data.preference import build_preference_dataset
    from align.data.sources import DataReport, Source
    from align.dpo.trainer import KlearDPOTrainer
    from align.models.klear import KlearMoeForCausalLM
    from align.models.klear.tiny import build_tiny_tokenizer, tiny_config
    from align.dpo.config import KlearDPOConfig

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    tokenizer = build_tiny_tokenizer()
    config = tiny_config(tokenizer) if args.toy else tiny_config(
        tokenizer, vocab_size=32768, hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
        num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, num_experts=16, num_experts_per_tok=4)
    model = KlearMoeForCausalLM(config)
    reference = KlearMoeForCausalLM(config)
    reference.load_state_dict(model.state_dict())

    work = Path(args.work)
    data_file = work / "pairs.jsonl"
    report = DataReport()
    dataset = build_preference_dataset([Source(str(data_file))], tokenizer, args.max_length, None, report)

    training_args = KlearDPOConfig(
        output_dir=str(work / variant), per_device_train_batch_size=args.batch, max_steps=args.steps,
        max_length=args.max_length, learning_rate=1e-5, use_cpu=args.device == "cpu", bf16=args.bf16, report_to="none",
        save_strategy="no", logging_steps=1, seed=0, dataloader_num_workers=0, disable_tqdm=True,
        packed_pairs=variant == "align",
    )
    trainer_class = KlearDPOTrainer if variant == "align" else DPOTrainer

    step_times = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.started = time.perf_counter()

        def on_step_end(self, *a, **k):
            step_times.append(time.perf_counter() - self.started)

    trainer = trainer_class(model=model, ref_model=reference, args=training_args, train_dataset=dataset,
                            processing_class=tokenizer, callbacks=[Timer()])
    if args.device == "cuda":  # peak of the CUDA caching allocator over what was allocated before training
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        trainer.train()
        torch.cuda.synchronize()
        peak_rise = torch.cuda.max_memory_allocated() - baseline
    else:
        with PeakRSS() as memory:
            trainer.train()
        peak_rise = memory.peak - memory.baseline
    measured = step_times[args.warmup :]
    tokens = max(e.get("num_tokens", 0) for e in trainer.state.log_history)  # TRL's cumulative count
    tokens_per_step = tokens / len(step_times)
    return {
        "variant": variant,
        "steps_timed": len(measured),
        "seconds_per_step": sum(measured) / len(measured),
        "tokens_per_s": tokens_per_step * len(measured) / sum(measured),
        "peak_rss_rise_mib" if args.device == "cpu" else "peak_cuda_rise_mib": peak_rise / 2**20,
        "first_loss": next(e["loss"] for e in trainer.state.log_history if "loss" in e),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2, help="steps of each run not timed")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (default: fp32)")
    parser.add_argument("--toy", action="store_true", help="the tiny test model (a smoke run, not a measurement)")
    harness.add_arguments(parser, rounds=3)
    parser.add_argument("--variant", choices=["trl", "align"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        harness.emit(run_variant(args.variant, args))
        return

    peak = "peak_rss_rise_mib" if args.device == "cpu" else "peak_cuda_rise_mib"
    with tempfile.TemporaryDirectory() as work:
        with open(Path(work) / "pairs.jsonl", "w") as f:
            for pair in synthetic_pairs(args.pairs, seed=0):
                f.write(json.dumps(pair) + "\n")

        def one_run(variant: str):
            command = [sys.executable, __file__, "--variant", variant, "--work", work, "--steps", str(args.steps),
                       "--warmup", str(args.warmup), "--batch", str(args.batch), "--max-length", str(args.max_length),
                       "--threads", str(args.threads), "--device", args.device] + (["--bf16"] if args.bf16 else []) + (["--toy"] if args.toy else [])
            return lambda: harness.run_worker(command, env={"HF_HUB_OFFLINE": "1"})

        comparison = harness.compare({"trl": one_run("trl"), "align": one_run("align")}, baseline="trl",
                                     rounds=args.rounds, warmup_rounds=args.warmup_rounds,
                                     metrics={"tokens_per_s": "higher", "seconds_per_step": "lower", peak: "lower"})
    print(comparison.table())
    summary = comparison.as_dict()
    first_losses = {v: comparison.rounds[0]["results"][v]["first_loss"] for v in comparison.variants}
    print(f"first-step loss (same computation, so equal): trl {first_losses['trl']:.5f}, align {first_losses['align']:.5f}")
    ratios = summary["ratios"]["align"]
    print(json.dumps({"steps": args.steps, "batch": args.batch, "max_length": args.max_length, "device": args.device,
                      "bf16": args.bf16, "rounds": args.rounds,
                      "throughput_ratio": ratios["tokens_per_s"]["median"], "memory_ratio": ratios[peak]["median"],
                      **{v: {**summary["variants"][v], "first_loss": first_losses[v]} for v in comparison.variants},
                      "harness": summary}))


if __name__ == "__main__":
    main()
