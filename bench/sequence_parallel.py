"""Benchmark: peak memory per rank and tokens/s of SFT on one long sequence, with and without sequence parallelism.

    .venv/bin/python bench/sequence_parallel.py [--tokens 8192] [--rounds 3] [--warmup-rounds 0] [--steps 3]

Both variants are `accelerate launch -m align.sft` with 2 CPU processes (gloo), DeepSpeed ZeRO-3 without expert
parallelism (configs/deepspeed/zero3-sp.json), float32, one conversation of `--tokens` tokens per micro-batch,
no gradient checkpointing:
  dp   configs/accelerate/cpu-2proc-sp.yaml without its parallelism_config: each rank trains its own sequence
  sp   configs/accelerate/cpu-2proc-sp.yaml: the two ranks form one Ulysses group and train one sequence together
The model is a random Klear at reduced width (hidden 256, 4 layers, 16 heads, 4 k/v heads, 8 experts, 2 per token)
so that activations, not weights, dominate. Peak memory is each rank's rise in resident memory over the run
(PeakRSS); tokens/s is the summary's trained tokens over its train runtime. Rounds are interleaved by
bench/harness.py (order rotated each round); printed is the harness's table (medians, spreads, per-round sp/dp
ratios, load averages) and a JSON line.
"""

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import harness  # bench/ is on the path when a bench script runs

REPO = Path(__file__).resolve().parent.parent
WORDS = "the quick brown fox jumps over the lazy dog experts route every token to a few of many".split()


def worker(argv: list[str]) -> None:
    """Inside the launch: align.sft under PeakRSS; each rank writes its figures to $SP_BENCH_OUT.rank{r}.json."""
    sys.path.insert(0, str(REPO / "bench"))
    from peak_rss import PeakRSS

    from align.sft.__main__ import main
    from align.training.cli import run_stage
    from align.sft.config import KlearSFTConfig

    with PeakRSS() as rss:
        run_stage("align.sft", main, KlearSFTConfig, argv)
    rank = int(os.environ.get("RANK", "0"))
    Path(f"{os.environ['SP_BENCH_OUT']}.rank{rank}.json").write_text(json.dumps({"rise": rss.peak - rss.baseline}))


def build_inputs(root: Path, tokens: int) -> tuple[Path, Path]:
    import torch

    from align.models.klear import KlearConfig, KlearMoeForCausalLM
    from align.models.klear.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = KlearConfig(vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=4, num_attention_heads=16,
                         num_key_value_heads=4, head_dim=16, intermediate_size=512, moe_intermediate_size=64,
                         num_experts=8, num_experts_per_tok=2, max_position_embeddings=4 * tokens,
                         pad_token_id=tokenizer.pad_token_id or 0)
    torch.manual_seed(0)
    model_dir = root / "model"
    KlearMoeForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    rng = random.Random(0)
    words = tokens // 2  # about two tiny-tokenizer tokens per word here; the run counts the real tokens
    data = root / "long.jsonl"
    with data.open("w") as f:
        for _ in range(8):
            question = " ".join(rng.choice(WORDS) for _ in range(words // 4))
            answer = " ".join(rng.choice(WORDS) for _ in range(3 * words // 4))
            f.write(json.dumps({"messages": [{"role": "user", "content": question},
                                             {"role": "assistant", "content": answer}]}) + "\n")
    return model_dir, data


def launch(variant: str, root: Path, model_dir: Path, data: Path, tokens: int, steps: int, run: int) -> dict:
    launcher = REPO / "configs/accelerate/cpu-2proc-sp.yaml"
    if variant == "dp":
        text = launcher.read_text()
        start = text.index("parallelism_config:")
        end = text.index("num_machines:")
        launcher = root / "cpu-2proc-dp.yaml"
        launcher.write_text(text[:start] + text[end:])
    out = root / f"{variant}-{run}"
    probe = root / f"{variant}-{run}-rss"
    from align.common.ports import free_loopback_port

    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launcher),
               "--main_process_port", str(free_loopback_port()), str(Path(__file__).resolve()), "--worker",
               "--config", "configs/sft/tiny.yaml", "--model_name_or_path", str(model_dir), "--dataset_name",
               str(data), "--output_dir", str(out), "--max_length", str(2 * tokens), "--max_steps", str(steps),
               "--bf16", "false", "--dtype", "float32", "--per_device_train_batch_size", "1", "--eval_strategy",
               "no", "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
               "--attn_implementation", "sdpa"]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "SP_BENCH_OUT": str(probe), "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    summary = json.loads((out / "training_summary.json").read_text())
    rises = [json.loads(Path(f"{probe}.rank{r}.json").read_text())["rise"] for r in (0, 1)]
    return {"peak_rise_gib_per_rank": max(rises) / 2**30, "tokens_per_s": summary["tokens_per_s"],
            "tokens_per_sequence": summary["train_tokens"] / steps / (1 if variant == "sp" else 2)}


def main() -> None:
    if "--worker" in sys.argv:
        argv = [a for a in sys.argv[1:] if a != "--worker"]
        return worker(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192)
    harness.add_arguments(parser, rounds=3)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir, data = build_inputs(root, args.tokens)
        runs = itertools.count()  # a fresh output folder per launch

        def variant(name: str):
            return lambda: launch(name, root, model_dir, data, args.tokens, args.steps, next(runs))

        comparison = harness.compare({"dp": variant("dp"), "sp": variant("sp")}, baseline="dp",
                                     rounds=args.rounds, warmup_rounds=args.warmup_rounds,
                                     metrics={"peak_rise_gib_per_rank": "lower", "tokens_per_s": "higher",
                                              "tokens_per_sequence": "higher"})
    print(comparison.table())
    print(json.dumps({"args": vars(args), **comparison.as_dict()}))

if __name__ == "__main__":
    main()
