"""Benchmark: GPPO (`loss_type: gppo`, align.rl's loss) against stock TRL GRPO (`loss_type: dapo`, TRL's own
`_compute_loss`), same model, data, rewards, batch and generation settings.

    PYTHONPATH=$PWD .venv/bin/python bench/gppo_throughput.py [--rounds 5] [--warmup-rounds 0] [--steps 8]

One process, CPU, fp32, the tiny Klear (align.models.klear.tiny) on the demo's RL prompts with the demo
reward; the tiny recipe's batch (8 per device, 4 generations, steps_per_generation 2, 16 completion tokens).
Rounds are interleaved by bench/harness.py (order rotated each round; each run a fresh trainer from the same
checkpoint and seed); a run's figure is optimiser steps per second over `train()` (TRL's train_runtime,
rollouts included). Prints the harness's table (medians, spreads, per-round ratio gppo/dapo, load averages)
and a JSON line.
"""

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import harness  # bench/ is on the path when a bench script runs

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


GPPO_ONLY = ("gppo_beta1", "gppo_beta2", "dual_clip", "nll_alpha")


def recipe(loss_type: str, folder: Path) -> Path:
    """The tiny recipe as it is (gppo), or with loss_type dapo and GPPO's own fields left out."""
    import yaml

    config = yaml.safe_load((REPO / "configs/rl/tiny.yaml").read_text())
    if loss_type != "gppo":
        config = {k: v for k, v in config.items() if k not in GPPO_ONLY} | {"loss_type": loss_type}
    path = folder / f"{loss_type}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(loss_type: str, model_dir: Path, data: Path, out: Path, steps: int) -> float:
    from trl import ModelConfig, ScriptArguments, TrlParser

    from align.rl.__main__ import main
    from align.rl.config import KlearGRPOConfig

    argv = ["--config", str(recipe(loss_type, out.parent)), "--model_name_or_path", str(model_dir),
            "--dataset_name", str(data), "--output_dir", str(out), "--overwrite_output_dir", "true",
            "--max_steps", str(steps), "--report_to", "none",
            "--bf16", "false", "--dtype", "float32", "--record_rollouts", "false", "--logging_steps", str(steps)]
    trainer = main(*TrlParser((ScriptArguments, KlearGRPOConfig, ModelConfig)).parse_args_and_config(argv))
    runtime = next(e["train_runtime"] for e in reversed(trainer.state.log_history) if "train_runtime" in e)
    return steps / float(runtime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_arguments(parser, rounds=5)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    from align.data.demo import write_demo_data
    from align.models.klear.tiny import build_tiny_klear

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = build_tiny_klear(root / "model", seed=0)
        data = write_demo_data(root / "data", n_train=64, n_eval=4)["rl"]
        runs = itertools.count()  # a fresh output_dir per run

        def variant(loss_type: str):
            return lambda: {"steps_per_s": run(loss_type, model_dir, data, root / f"{loss_type}-{next(runs)}", args.steps)}

        comparison = harness.compare({"dapo": variant("dapo"), "gppo": variant("gppo")}, baseline="dapo",
                                     rounds=args.rounds, warmup_rounds=args.warmup_rounds,
                                     metrics={"steps_per_s": "higher"})
    print(comparison.table())
    print(json.dumps(comparison.as_dict()))

if __name__ == "__main__":
    main()
