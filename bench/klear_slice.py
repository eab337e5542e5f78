"""A real-width Klear slice, one SFT step and one DPO step under ZeRO-3 + expert parallel 2 on 2 CPU
processes, each process's peak memory against what `align.plan` predicts for exactly that run.

    .venv/bin/python bench/klear_slice.py --out runs/klear-slice [--layers 2 --experts 16 --optim sgd]

The slice has Klear-46B-A2.5B's widths (hidden 2048, 32 query / 4 key-value heads of 64, expert
width 896, top-8 routed experts plus the shared expert, vocabulary 151,936) and few layers and
experts (default 2 and 16: expert parallel 2 leaves 8 per rank). Random bf16 weights; the tokenizer
is the tiny test one (its ids cover only the first 512 rows of the 151,936-row embedding, which
changes no memory). The steps run the real recipes (`configs/sft|dpo/klear-46b-a2.5b.yaml`) through
`accelerate launch --config_file configs/accelerate/cpu-2proc.yaml` with overrides (one step,
max_length 512, CPU); every row is long enough that each micro-batch holds the planner's
worst case (SFT 512 tokens; DPO prompt + chosen + rejected ~ 2 x 512).

Memory on CPU is each process's resident set (VmRSS, sampled every 5 ms by a thread in the
process): `peak_train` from the trainer's `on_train_begin` to `on_train_end`, and `runtime`, the
resident set after the imports, before the model is loaded: the interpreter, torch, transformers,
TRL and DeepSpeed. The planner is given that runtime figure and predicts the rest. A watchdog
stops the launch if the machine's available memory falls under 1.5 GiB (the machine is shared).

One measurement per stage, not a comparison of variants: the figure is measured memory against the
planner's prediction for the same run (no baseline to alternate with), so it does not use bench/harness.py.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GIB = 2**30
PAGE = os.sysconf("SC_PAGE_SIZE")
WORDS = "the model routes every token to experts and the shared expert blends in answer question prefer".split()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


class RssSampler:
    """Peak resident memory of this process, overall and inside a marked phase."""

    def __init__(self):
        self.peak = self.phase_peak = rss_bytes()
        self.in_phase = False
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._stop.wait(0.005):
            now = rss_bytes()
            self.peak = max(self.peak, now)
            if self.in_phase:
                self.phase_peak = max(self.phase_peak, now)

    def begin(self):
        self.phase_peak, self.in_phase = rss_bytes(), True

    def end(self):
        self.in_phase = False


def worker(stage: str, out: Path, stage_args: list[str]) -> None:
    """One rank of the launch: run align.sft / align.dpo with the sampler watching."""
    sampler = RssSampler()
    import deepspeed  # noqa: F401  (part of the runtime: imported before the baseline is read)
    from transformers import TrainerCallback
    from trl import ModelConfig, ScriptArguments, TrlParser

    if stage == "sft":
        import align.sft.__main__ as entry
        from align.sft.config import KlearSFTConfig as Config

        base = entry.KlearSFTTrainer
    else:
        import align.dpo.__main__ as entry
        from align.dpo.config import KlearDPOConfig as Config

        base = entry.KlearDPOTrainer
    runtime = rss_bytes()

    class Phase(TrainerCallback):
        def on_train_begin(self, *args, **kwargs):
            sampler.begin()

        def on_train_end(self, *args, **kwargs):
            sampler.end()

    class Measured(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(Phase())

    entry.KlearSFTTrainer = entry.KlearDPOTrainer = Measured
    trainer = entry.main(*TrlParser((ScriptArguments, Config, ModelConfig)).parse_args_and_config(stage_args))
    rank = trainer.accelerator.process_index
    loss = next((e["loss"] for e in trainer.state.log_history if "loss" in e), None)
    result = {"rank": rank, "runtime_bytes": runtime, "peak_train_bytes": sampler.phase_peak,
              "peak_process_bytes": sampler.peak, "loss": loss, "steps": trainer.state.global_step}
    (out / f"rss-{stage}-rank{rank}.json").write_text(json.dumps(result))


def build_slice(model_dir: Path, layers: int, experts: int) -> dict:
    import torch

    import align  # noqa: F401
    from align.models.klear import KlearConfig, KlearMoeForCausalLM
    from align.models.klear.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = KlearConfig(
        num_hidden_layers=layers, num_experts=experts, max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
    )
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # built directly in bf16: no fp32 copy on this machine
    model = KlearMoeForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return config.to_dict()


def write_data(out: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)

    def text(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words))

    with open(out / "sft.jsonl", "w") as f:  # every row longer than max_length: truncated to a full bin
        for _ in range(rows):
            f.write(json.dumps({"messages": [{"role": "user", "content": text(20)},
                                             {"role": "assistant", "content": text(700)}]}) + "\n")
    with open(out / "dpo.jsonl", "w") as f:  # short prompts, answers filling max_length
        for _ in range(rows):
            f.write(json.dumps({"prompt": [{"role": "user", "content": text(3)}],
                                "chosen": [{"role": "assistant", "content": text(470)}],
                                "rejected": [{"role": "assistant", "content": text(470)}]}) + "\n")


def stage_arguments(stage: str, out: Path, args) -> list[str]:
    common = ["--model_name_or_path", str(out / "model"), "--output_dir", str(out / f"{stage}-run"),
              "--max_steps", "1", "--max_length", str(args.max_length), "--per_device_train_batch_size", "1",
              "--gradient_accumulation_steps", "1", "--use_cpu", "true", "--bf16", "true", "--dtype", "bfloat16",
              "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1", "--optim", args.optim,
              "--dataset_mixture", json.dumps([{"path": str(out / f"{stage}.jsonl"), "weight": 1.0}]),
              "--dataloader_num_workers", "0", "--disable_tqdm", "true"]
    if stage == "dpo":
        common += ["--max_prompt_length", str(args.max_length // 2), "--judge", "null"]
    return ["--config", f"configs/{stage}/klear-46b-a2.5b.yaml", *common]


def launch(stage: str, out: Path, args) -> dict:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/cpu-2proc.yaml",
               "--main_process_port", str(29500 + random.Random().randrange(1000)), __file__, "--worker", stage,
               "--out", str(out), "--", *stage_arguments(stage, out, args)]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = out / f"{stage}.log"
    started = time.time()
    with log.open("w") as sink:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
        while proc.poll() is None:
            if available_bytes() < 1.5 * GIB:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                sys.exit(f"{stage}: stopped, the machine's available memory fell under 1.5 GiB (see {log})")
            time.sleep(0.2)
    if proc.returncode:
        sys.exit(f"{stage}: launch failed ({proc.returncode}); last lines of {log}:\n"
                 + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
    ranks = [json.loads((out / f"rss-{stage}-rank{r}.json").read_text()) for r in (0, 1)]
    return {"wall_s": round(time.time() - started, 1), "ranks": ranks}


def prediction(stage: str, config: dict, args, runtime_bytes: float) -> dict:
    sys.path.insert(0, str(REPO))
    from align.plan.memory import ModelShape, Parallel, Training, plan

    deepspeed = json.loads((REPO / "configs/deepspeed/zero3-ep2.json").read_text())
    parallel = Parallel(world=2, zero_stage=deepspeed["zero_optimization"]["stage"],
                        ep_size=deepspeed["expert_parallel"]["autoep_size"])
    training = Training(stage=stage, max_length=args.max_length, micro_batch=1, gradient_checkpointing=True,
                        packing=True, max_prompt_length=args.max_length // 2 if stage == "dpo" else None,
                        reference="precomputed", optim=args.optim, freeze_router=stage == "dpo")
    return plan(ModelShape.from_config(config), parallel, training, runtime_bytes).gib()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--optim", default="sgd", help="adamw_torch needs ~8 GiB more in all; see docs/scaling.md")
    parser.add_argument("--stages", nargs="+", default=["sft", "dpo"])
    parser.add_argument("--worker", choices=["sft", "dpo"], help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    out = Path(args.out).resolve()
    if args.worker:
        worker(args.worker, out, argv[split + 1 :])
        return

    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "model" / "config.json"
    if not config_path.exists():
        build_slice(out / "model", args.layers, args.experts)
        write_data(out, rows=8)
    config = json.loads(config_path.read_text())
    summary = out / "slice.json"
    earlier = json.loads(summary.read_text())["stages"] if summary.exists() else {}
    results = {"layers": config["num_hidden_layers"], "experts": config["num_experts"], "optim": args.optim,
               "max_length": args.max_length, "stages": earlier}
    for stage in args.stages:
        measured = launch(stage, out, args)
        runtime = max(r["runtime_bytes"] for r in measured["ranks"])
        predicted = prediction(stage, config, args, runtime)
        results["stages"][stage] = {"measured": measured, "predicted_gib": predicted}
        for r in measured["ranks"]:
            peak = r["peak_train_bytes"] / GIB
            print(f"{stage} rank {r['rank']}: runtime {r['runtime_bytes'] / GIB:.2f} GiB, peak in training "
                  f"{peak:.2f} GiB (whole process {r['peak_process_bytes'] / GIB:.2f}), "
                  f"planner {predicted['total']:.2f} GiB ({(predicted['total'] - peak) / peak:+.1%}), "
                  f"loss {r['loss']}", flush=True)
    summary.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
