"""The GPU check that `bench/gpu/run.sh` runs: six sections, each writing into OUT/results.json.

    python3 bench/gpu/check.py --out OUT_DIR              # CUDA, real sizes (under 9 minutes on one H200)
    python3 bench/gpu/check.py --out OUT_DIR --cpu-smoke  # the same code at toy sizes on CPU (CI)

- `bf16_recipes`: the tiny SFT recipe, then the tiny DPO recipe and a short GPPO run (tiny RL recipe) from its result, bf16, one process
  (`align.sft` / `align.dpo` main, in this process): losses and tokens/s from training_summary.json.
- `klear_slice`: a Klear with the real widths and all 256 experts, as many layers as fit, forward +
  backward in bf16 with each experts backend (`grouped_mm`, `batched_mm`): tokens/s, achieved
  TFLOP/s (FLOPs from `align.plan.memory.training_flops_per_token`), MFU against 989 TFLOP/s (the
  H100/H200 dense bf16 datasheet peak) and ~790 (a measured 8192^3 bf16 matmul on such an H200), and
  peak memory.
- `dpo_vs_trl`: `bench/dpo_throughput.py --device cuda --bf16`: stock TRL vs align.dpo.
- `vllm_serving` (near the end: a timeout keeps the others): `align.serve`'s `VLLMServer` as documented
  (torch.compile and CUDA graphs on, every visible GPU) on a random tiny Klear (head_dim 64,
  `output_router_logits: true` as trained checkpoints have it), bf16: start-up seconds, whether the
  log shows the compiled path and external routing, and how many greedy answers (8 prompts, 24
  tokens) equal transformers' on the same GPU (bf16: a near-tie may flip; reported, not asserted).
  Recorded as skipped where vLLM is not installed, and in the CPU smoke (tests/serving serves the
  same way on vLLM's CPU build).
- `rl_vllm` (after it, for the same reason): 3 GPPO steps of the tiny RL recipe on a random tiny Klear (head_dim
  64, fp32) with `use_vllm`, once colocated (`vllm_gpu_memory_utilization` 0.2) and once from an
  `align.serve --rl-weight-sync` server (`gpu_memory_utilization` 0.2, eager; on the last GPU, which is the
  trainer's when only one is visible: then over the gloo weight-transfer backend, NCCL refusing two ranks on one
  device; over nccl on a GPU of its own), each a subprocess with its own error: steps, TRL's
  `sampling/sampling_logp_difference/max` per generation batch (the second follows an optimiser step: small only
  if the weights reached vLLM). Skipped without vLLM, and in the CPU smoke (both modes run on vLLM's CPU build in
  tests/rl/test_rl_vllm_colocate.py and tests/serving/test_vllm_serving.py).

- `iterate_round` (last): one round of the tiny on-policy DPO recipe (`python -m align.iterate`, 16 prompts x 4
  samples, 4 DPO steps, bf16) on a random tiny Klear (head_dim 64) with the `auto` sampling engine (vLLM where
  installed): round-1/phases.json (each phase's seconds, the engine, its processes left after closing, i.e.
  before DPO). Skipped in the CPU smoke (tests/iterate/test_iterate_vllm.py is the CPU path).

Not here: sequence parallelism (bench/sequence_parallel.py) needs at least 2 GPUs, and the lent machine has
one. On a multi-GPU machine it should add the CPU benchmark's comparison on NCCL with `flash_attention_2`:
Klear-46B's real widths at 32K and 64K tokens per micro-batch, groups of 1, 2, 4 and 8 within a node, peak
memory per GPU against `align.plan`'s figures, tokens/s, and the all-to-all share of the step time.

Each section catches its own failure and records the error, so one broken section keeps the others;
results.json is rewritten after every section. `environment` reports the versions found against this
project's pins (a GPU image may hold other versions; they are reported, not assumed).
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))
PEAK_DATASHEET_TFLOPS = 989.0
PEAK_MEASURED_TFLOPS = 790.0
PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "deepspeed")


def environment() -> dict:
    import importlib.metadata as metadata
    import tomllib

    import torch

    pins = {}
    for requirement in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        match = re.match(r"([A-Za-z0-9_.-]+)==([^;\s]+)", requirement)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    info = {
        "python": platform.python_version(),
        "packages": found,
        "pinned": {name: pins.get(name) for name in PACKAGES},
        "differs_from_pins": sorted(n for n in PACKAGES if pins.get(n) and found[n] and
                                    found[n].split("+")[0] != pins[n]),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, capability=f"{props.major}.{props.minor}")
    return info


def train_stage(stage: str, args: list[str]) -> dict:
    """Run align.sft / align.dpo / align.rl's main in this process; the run's training_summary.json."""
    from trl import ModelConfig, ScriptArguments, TrlParser

    if stage == "sft":
        from align.sft.__main__ import main
        from align.sft.config import KlearSFTConfig as Config
    elif stage == "rl":
        from align.rl.__main__ import main
        from align.rl.config import KlearGRPOConfig as Config
    else:
        from align.dpo.__main__ import main
        from align.dpo.config import KlearDPOConfig as Config
    parsed = TrlParser((ScriptArguments, Config, ModelConfig)).parse_args_and_config(args)
    trainer = main(*parsed)
    summary = json.loads((Path(parsed[1].output_dir) / "training_summary.json").read_text())
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"steps": summary["global_steps"], "first_loss": summary["first_loss"], "final_loss": summary["final_loss"],
            "losses": losses, "tokens": summary["train_tokens"], "tokens_per_s": summary["tokens_per_s"],
            "train_runtime_s": summary["train_runtime_s"]}


def bf16_recipes(work: Path, smoke: bool) -> dict:
    import torch

    from align.data.demo import write_demo_data
    from align.models.klear.tiny import build_tiny_klear

    model = build_tiny_klear(work / "tiny-klear", seed=0)
    data = write_demo_data(work / "data", n_train=32 if smoke else 256, n_eval=4)
    device = ["--use_cpu", "true"] if smoke else ["--use_cpu", "false"]
    steps = "2" if smoke else "40"
    common = [*device, "--bf16", "true", "--dtype", "bfloat16", "--max_steps", steps, "--report_to", "none",
              "--save_strategy", "no", "--logging_steps", "1", "--disable_tqdm", "true"]
    sft = train_stage("sft", ["--config", str(REPO / "configs/sft/tiny.yaml"), "--model_name_or_path", str(model),
                              "--dataset_name", str(data["sft"]), "--eval_dataset_name", str(data["sft_eval"]),
                              "--output_dir", str(work / "sft"), *common])
    dpo = train_stage("dpo", ["--config", str(REPO / "configs/dpo/tiny.yaml"), "--model_name_or_path",
                              str(work / "sft"), "--dataset_name", str(data["dpo"]), "--eval_dataset_name",
                              str(data["dpo_eval"]), "--output_dir", str(work / "dpo"), *common])
    # One short GPPO run (transformers rollouts) from the SFT model, with the demo reward.
    rl = train_stage("rl", ["--config", str(REPO / "configs/rl/tiny.yaml"), "--model_name_or_path", str(work / "sft"),
                            "--dataset_name", str(data["rl"]), "--output_dir", str(work / "rl"),
                            "--max_completion_length", "8", *common])
    return {"device": "cpu" if smoke else torch.cuda.get_device_name(0), "dtype": "bfloat16", "processes": 1,
            "sft": sft, "dpo": dpo, "rl": rl}


def slice_config(smoke: bool, layers: int):
    from align.models.klear import KlearConfig

    if smoke:  # toy widths, same architecture
        return KlearConfig(vocab_size=512, hidden_size=64, moe_intermediate_size=32, intermediate_size=128,
                           num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=layers, num_experts=8,
                           num_experts_per_tok=2, max_position_embeddings=4096)
    return KlearConfig(num_hidden_layers=layers, max_position_embeddings=8192)  # real widths, 256 experts


def layers_that_fit(tokens: int, free_bytes: int) -> int:
    """Layers whose bf16 weights, gradients and saved activations fit in 70% of free memory, after the
    embedding, LM head and the loss's float32 logits (~3 copies)."""
    from align.plan.memory import ModelShape, layer_activation_bytes_per_token, parameter_counts

    one = ModelShape(num_hidden_layers=1, sparse_layers=1)
    counts = parameter_counts(one)
    per_layer = 4 * (counts["total"] - counts["embedding"] - counts["lm_head"])
    per_layer += layer_activation_bytes_per_token(one, 2) * tokens
    fixed = 4 * (counts["embedding"] + counts["lm_head"]) + 3 * 4 * tokens * one.vocab_size
    return max(1, min(32, int((0.7 * free_bytes - fixed) // per_layer)))


def time_backend(model, backend: str, batch: int, seq: int, vocab: int, device, steps: int, warmup: int) -> dict:
    import torch

    if hasattr(model, "set_experts_implementation"):
        model.set_experts_implementation(backend)
    else:  # transformers versions without the setter read the config attribute
        model.config._experts_implementation = backend
    generator = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq), generator=generator).to(device)

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        return loss

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        loss = step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    result = {"batch": batch, "seq": seq, "tokens": batch * seq, "seconds_per_step": seconds,
              "tokens_per_s": batch * seq / seconds, "loss": loss.item()}
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def klear_slice(smoke: bool) -> dict:
    """Forward + backward of the slice with each experts backend. `batched_mm` copies the chosen
    experts' weights for every (token, expert) pair, so at real width it runs out of memory at long
    sequences: the micro-batch and then the sequence are halved until it fits, and each try is recorded."""
    import torch

    import align  # noqa: F401
    from align.models.klear import KlearMoeForCausalLM
    from align.plan.memory import ModelShape, Training, parameter_counts, training_flops_per_token

    device = torch.device("cpu" if smoke else "cuda")
    shapes = [(1, 64)] if smoke else [(2, 4096), (1, 4096), (1, 2048), (1, 1024), (1, 512), (1, 256), (1, 128), (1, 64)]
    if smoke:
        layers = 2
    else:
        free, _ = torch.cuda.mem_get_info()
        layers = layers_that_fit(shapes[0][0] * shapes[0][1], free)
    config = slice_config(smoke, layers)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # built in bf16 directly: no float32 copy of the weights
    try:
        with torch.device(device):
            model = KlearMoeForCausalLM(config)
    finally:
        torch.set_default_dtype(torch.float32)
    model.train()
    shape = ModelShape.from_config(config.to_dict())
    out = {"device": str(device), "dtype": "bfloat16", "layers": layers, "experts": config.num_experts,
           "top_k": config.num_experts_per_tok, "hidden": config.hidden_size, "vocab": config.vocab_size,
           "parameters": parameter_counts(shape)["total"], "gradient_checkpointing": False,
           "peak_tflops_datasheet": PEAK_DATASHEET_TFLOPS, "peak_tflops_measured_matmul": PEAK_MEASURED_TFLOPS,
           "backends": {}}
    for backend in ("grouped_mm", "batched_mm"):
        tries = []
        for batch, seq in shapes:
            try:
                timing = time_backend(model, backend, batch, seq, config.vocab_size, device,
                                      steps=1 if smoke else 5, warmup=1 if smoke else 2)
            except torch.OutOfMemoryError:
                tries.append(f"out of memory at {batch} x {seq}")
                model.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                continue
            except Exception as error:  # noqa: BLE001  (recorded; the other backend still runs)
                tries.append(f"{type(error).__name__}: {error}"[:2000])
                break
            flops_per_token = training_flops_per_token(shape, Training(stage="sft", max_length=seq,
                                                                       gradient_checkpointing=False))
            tflops = flops_per_token * timing["tokens_per_s"] / 1e12
            timing.update(flops_per_token=flops_per_token, achieved_tflops=tflops,
                          mfu_vs_989=tflops / PEAK_DATASHEET_TFLOPS, mfu_vs_790=tflops / PEAK_MEASURED_TFLOPS)
            out["backends"][backend] = {"ok": True, **timing, "failed_tries": tries}
            break
        if backend not in out["backends"]:
            out["backends"][backend] = {"ok": False, "failed_tries": tries}
        if device.type == "cuda":
            torch.cuda.empty_cache()
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def dpo_vs_trl(smoke: bool) -> dict:
    # The smoke runs each variant once (one round: a worker process each, which is most of its time); the
    # harness's rotation over rounds has its own test (tests/bench/test_harness.py)
    size = (["--steps", "2", "--warmup", "1", "--batch", "2", "--pairs", "16", "--max-length", "128", "--toy",
             "--rounds", "1"] if smoke
            else ["--steps", "10", "--warmup", "2", "--batch", "8", "--pairs", "512", "--max-length", "1024",
                  "--device", "cuda", "--bf16"])
    command = [sys.executable, str(REPO / "bench/dpo_throughput.py"), *size]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300 if smoke else 240, cwd=REPO)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"command": " ".join(["python3", "bench/dpo_throughput.py", *size]), **result}


def vllm_tiny_klear(path: Path, **config) -> Path:
    """The random tiny Klear the vLLM sections run: head_dim 64 (vLLM's CPU attention, which the tests beside
    these sections use, has no kernel for the tiny factory's 16), seed 0."""
    from align.models.klear.tiny import build_tiny_klear

    return build_tiny_klear(path, seed=0, head_dim=64, **config)


def vllm_tiny_run_inputs(work: Path, name: str) -> tuple[Path, dict]:
    """`vllm_tiny_klear` and the demo data (32 training rows, 4 eval rows) of a section's runs."""
    from align.data.demo import write_demo_data

    return vllm_tiny_klear(work / f"{name}-klear-hd64"), write_demo_data(work / f"{name}-data", n_train=32, n_eval=4)


def run_module(module: str, args: list[str], out: Path, timeout_s: float, env: dict | None = None) -> tuple[dict, str]:
    """`python -m MODULE ARGS --output_dir OUT`, a subprocess (vLLM decorates Klear's class in the process that
    builds it) bounded by `timeout_s`: `({ok, seconds[, error: why and the log's tail]}, the log)`."""
    started = time.time()
    try:
        done = subprocess.run([sys.executable, "-m", module, *args, "--output_dir", str(out)], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=timeout_s)
        log, failure = done.stdout + done.stderr, done.returncode and f"exit {done.returncode}"
    except subprocess.TimeoutExpired as expired:  # what it printed so far: bytes on POSIX even with text=True
        log = "".join(part.decode(errors="replace") if isinstance(part, bytes) else part or ""
                      for part in (expired.stdout, expired.stderr))
        failure = f"timed out after {timeout_s:.0f} s"
    result = {"ok": not failure, "seconds": round(time.time() - started, 1)}
    if failure:
        result["error"] = f"{failure}: " + log[-2500:]
    return result, log


def vllm_serving(smoke: bool) -> dict:
    import importlib.util

    if smoke:
        return {"skipped": "CPU smoke: tests/serving serves compiled on vLLM's CPU build"}
    if importlib.util.find_spec("vllm") is None:
        return {"skipped": "vLLM is not installed on this image"}
    from align.judging.answers import EndpointBackend, TransformersBackend
    from align.serve.server import VLLMServer

    with tempfile.TemporaryDirectory() as tmp:
        model = vllm_tiny_klear(Path(tmp) / "klear-hd64", output_router_logits=True)
        prompts = [[{"role": "user", "content": f"Question {i}: what is {i} plus {i}?"}] for i in range(8)]
        reference = TransformersBackend(model, batch_size=1, device="cuda", dtype="bfloat16").generate(
            prompts, temperature=0.0, max_new_tokens=24, n=1, seed=0)
        started = time.time()
        with VLLMServer(model, extra_args=["--dtype", "bfloat16", "--max-model-len", "1024",
                                           "--gpu-memory-utilization", "0.3"], log_path=Path(tmp) / "serve.log",
                        startup_timeout_s=240) as server:
            startup_s = time.time() - started
            answers = EndpointBackend(server.base_url, server.model, concurrency=4).generate(
                prompts, temperature=0.0, max_new_tokens=24, n=1, seed=0)
            log = (Path(tmp) / "serve.log").read_text(errors="replace")
    return {"startup_s": round(startup_s, 1), "compiled": "enforce_eager=False" in log,
            "external_routing": "MoERunner (external routing)" in log,
            "greedy_equal_transformers": sum(a == b for a, b in zip(answers, reference)), "prompts": len(prompts)}


RL_STEPS = 3  # generation batches at steps 0 and 2 (the tiny recipe's steps_per_generation 2): the second follows
# an optimiser step, so its sampler/trainer log-probability gap shows whether the new weights reached vLLM
LOGP_GAP = re.compile(r"'sampling/sampling_logp_difference/max': '?([0-9.e+-]+)")


def rl_run(args: list[str], env: dict, out: Path, timeout_s: float) -> dict:
    """One `python -m align.rl` GPPO run: steps, the sampler/trainer log-probability gaps TRL logs for vLLM
    rollouts, or the error."""
    result, log = run_module("align.rl", args, out, timeout_s, env)
    result["sampling_logp_difference_max"] = [float(g) for g in LOGP_GAP.findall(log)]
    summary = out / "training_summary.json"
    if summary.is_file():
        result["steps"] = json.loads(summary.read_text())["global_steps"]
    return result


def rl_vllm(work: Path, smoke: bool) -> dict:
    import importlib.util

    if smoke:
        return {"skipped": "CPU smoke: both modes run on vLLM's CPU build in tests/rl/test_rl_vllm_colocate.py and "
                           "tests/serving/test_vllm_serving.py"}
    if importlib.util.find_spec("vllm") is None:
        return {"skipped": "vLLM is not installed on this image"}
    import torch

    from align.common.ports import free_loopback_port
    from align.serve.server import VLLMServer

    model, data = vllm_tiny_run_inputs(work, "rl")
    # fp32 on both sides, so a gap after a step means stale weights, not rounding; random-text completions differ
    # in length parity, so groups have variance and the weights move (as in tests/rl/test_rl_vllm_colocate.py)
    common = ["--config", "configs/rl/tiny.yaml", "--model_name_or_path", str(model), "--dataset_name",
              str(data["rl"]), "--max_steps", str(RL_STEPS), "--use_cpu", "false", "--bf16", "false",
              "--dtype", "float32", "--report_to", "none", "--max_completion_length", "16", "--use_vllm", "true",
              "--reward_funcs", "tests.rl.learning_task.even_length"]
    gpus = torch.cuda.device_count()
    results = {"gpus": gpus, "steps_asked": RL_STEPS}
    # each part is bounded at 150 s (a hung NCCL rendezvous included), so a stuck part costs this section, not
    # run.sh's whole 530 s; expected here: about 1 minute for each of the three parts
    # colocate: TRL's engine in the trainer's process, as docs/rl.md runs it (TRL sets torch.distributed's variables)
    results["colocate"] = rl_run([*common, "--vllm_mode", "colocate", "--vllm_gpu_memory_utilization", "0.2"],
                                 dict(os.environ), work / "rl-colocate", timeout_s=150)
    # server: `align.serve --rl-weight-sync` on the last visible GPU, the trainer on the first; on one GPU over gloo
    # (NCCL refuses two ranks of one group on one device), else over TRL's nccl
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") or ",".join(map(str, range(gpus)))
    server_env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible.split(",")[-1]}
    trainer_env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible.split(",")[0]}
    results["server_gpu"] = "its own" if gpus > 1 else "the trainer's"
    results["server_backend"] = "nccl" if gpus > 1 else "gloo"
    log_path = work / "rl-serve.log"
    started = time.time()
    try:
        with VLLMServer(model, rl_weight_sync=True, rl_weight_sync_backend=results["server_backend"], log_path=log_path,
                        env=server_env, startup_timeout_s=150,
                        extra_args=["--dtype", "float32", "--max-model-len", "512", "--gpu-memory-utilization", "0.2",
                                    "--enforce-eager"]) as server:
            results["server_startup_s"] = round(time.time() - started, 1)
            results["server"] = rl_run([*common, "--vllm_mode", "server", "--vllm_server_base_url",
                                        server.base_url.removesuffix("/v1"), "--vllm_server_timeout", "30",
                                        "--vllm_group_port", str(free_loopback_port())],
                                       trainer_env, work / "rl-server", timeout_s=150)
            results["server"]["server_log_tail"] = log_path.read_text(errors="replace")[-1500:]
    except Exception as error:  # noqa: BLE001  (the server's failure is this run's result; colocate's stays)
        results["server"] = {"ok": False, "error": f"{type(error).__name__}: {error}"[:3000]}
    return results


def iterate_round(work: Path, smoke: bool) -> dict:
    """One round of the tiny on-policy DPO recipe on CUDA (`python -m align.iterate`, a subprocess): sampling with
    the `auto` engine (vLLM where installed: one engine, closed before DPO starts), the reward scorer, DPO, from a
    random tiny Klear with head_dim 64; each phase's seconds, the engine and its processes left after closing."""
    if smoke:
        return {"skipped": "CPU smoke: the CPU path is tests/iterate (test_iterate_vllm.py samples a round with vLLM's "
                           "CPU build and closes it before DPO)"}
    model, data = vllm_tiny_run_inputs(work, "iterate")
    out = work / "iterate"
    # random text earns the length-parity reward about half the time: every prompt likely has a pair
    args = ["--config", "configs/iterate/tiny.yaml", "--model_name_or_path", str(model), "--prompts_dataset",
            str(data["rl"]), "--use_cpu", "false", "--rounds", "1", "--prompts_per_round", "16", "--max_steps", "4",
            "--reward_funcs", "tests.rl.learning_task.even_length"]
    result, _ = run_module("align.iterate", args, out, timeout_s=180)
    phases = out / "round-1/phases.json"
    if phases.is_file():
        result["phases"] = json.loads(phases.read_text())
    return result


def run_section(results: dict, name: str, out: Path, fn, *args) -> None:
    started = time.time()
    try:
        results[name] = {"ok": True, **fn(*args)}
    except BaseException as error:  # noqa: BLE001  (a section's failure is a result, not the end of the run)
        if isinstance(error, KeyboardInterrupt):
            raise
        results[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"[:3000],
                         "traceback": traceback.format_exc()[-4000:]}
    results[name]["seconds"] = round(time.time() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    status = "ok" if results[name]["ok"] else "FAILED: " + results[name]["error"].splitlines()[0][:300]
    print(f"[{name}] {status} ({results[name]['seconds']} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--cpu-smoke", action="store_true", help="toy sizes on CPU (what CI runs)")
    parser.add_argument("--sections", nargs="+", default=["bf16_recipes", "klear_slice", "dpo_vs_trl", "vllm_serving",
                                                          "rl_vllm", "iterate_round"])
    parser.add_argument("--work", type=Path, help="scratch for models and runs (default: a new temporary directory; "
                        "OUT_DIR keeps only results.json, which is what the device tool brings back)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="klear-gpu-check-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    started = time.time()
    results = {"mode": "cpu-smoke" if args.cpu_smoke else "gpu", "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                                time.gmtime())}
    run_section(results, "environment", args.out, environment)
    sections = {"bf16_recipes": lambda: bf16_recipes(work, args.cpu_smoke),
                "klear_slice": lambda: klear_slice(args.cpu_smoke),
                "dpo_vs_trl": lambda: dpo_vs_trl(args.cpu_smoke),
                "vllm_serving": lambda: vllm_serving(args.cpu_smoke),
                "rl_vllm": lambda: rl_vllm(work, args.cpu_smoke),
                "iterate_round": lambda: iterate_round(work, args.cpu_smoke)}
    for name in args.sections:
        run_section(results, name, args.out, sections[name])
    results["total_seconds"] = round(time.time() - started, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {args.out / 'results.json'} in {results['total_seconds']} s")


if __name__ == "__main__":
    main()
