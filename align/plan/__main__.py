"""Will a recipe fit? Per-GPU memory of an SFT/DPO run, before you launch it.

    python -m align.plan --config configs/dpo/klear-46b-a2.5b.yaml --gpus 16 --gpu-memory-gib 80
        [--deepspeed configs/deepspeed/zero3-ep8.json] [--nodes 2] [--json]
        [any recipe or ModelConfig field: --use_peft true --lora_r 16 --max_length 2048 ...]

The model: `model_name_or_path`'s config.json when it is a local directory, else the released
Klear-46B-A2.5B config (KlearConfig's defaults) for a Klear name. The DeepSpeed JSON: `--deepspeed`,
else the one the recipe's launcher uses (the `--config_file` of the `accelerate launch` line in the
recipe's header, whose `deepspeed_config_file` names it). The model and the arithmetic are in
`align/plan/memory.py`; docs/scaling.md states the assumptions.
"""

import argparse
import json
import re
import sys
from dataclasses import fields, replace
from pathlib import Path

import yaml

from .memory import (
    GIB,
    Lora,
    ModelShape,
    Parallel,
    Training,
    fitting_changes,
    parameter_counts,
    plan,
    smallest_sequence_parallel_size,
    step_seconds,
)

DPO_ONLY_FIELDS = ("beta", "loss_type", "precompute_ref_log_probs", "max_prompt_length", "share_prompt")


def parse_value(text: str):
    """A command-line value as the YAML recipe would read it (`true`, `16`, `[a, b]`)."""
    return yaml.safe_load(text)


def parse_overrides(extra: list[str]) -> dict:
    """`--key value` pairs (a key followed by several values makes a list: `--lora_target_modules q_proj v_proj`)."""
    overrides, key = {}, None
    for token in extra:
        if token.startswith("--"):
            key = token[2:].replace("-", "_")
            if "=" in key:
                key, value = key.split("=", 1)
                overrides[key] = parse_value(value)
                key = None
            else:
                overrides[key] = None
        elif key is None:
            raise SystemExit(f"align.plan: unexpected argument {token!r} (recipe fields are given as --name value)")
        elif overrides[key] is None:
            overrides[key] = parse_value(token)
        else:
            current = overrides[key]
            overrides[key] = [*(current if isinstance(current, list) else [current]), parse_value(token)]
    for key, value in overrides.items():
        if value is None:
            raise SystemExit(f"align.plan: --{key} needs a value")
    return overrides


def check_override_names(overrides: dict, stage: str) -> None:
    """Refuse misspelled fields, as `TrlParser` would when the run starts."""
    from trl import ModelConfig, ScriptArguments

    from align.dpo.config import KlearDPOConfig
    from align.sft.config import KlearSFTConfig

    config_class = KlearDPOConfig if stage == "dpo" else KlearSFTConfig
    known = {f.name for cls in (ScriptArguments, ModelConfig, config_class) for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SystemExit(f"align.plan: unknown recipe field(s) {unknown} for {stage.upper()}")


def launcher_config(recipe_path: Path) -> Path | None:
    """The accelerate config named in the recipe's header (`accelerate launch --config_file X`)."""
    match = re.search(r"--config_file\s+(\S+)", recipe_path.read_text())
    return Path(match.group(1)) if match else None


def deepspeed_config_path(recipe_path: Path, explicit: str | None) -> tuple[Path | None, Path | None]:
    if explicit:
        return Path(explicit), None
    accelerate_path = launcher_config(recipe_path)
    if accelerate_path is None:
        return None, None
    if not accelerate_path.exists():
        raise SystemExit(f"align.plan: {recipe_path} launches with {accelerate_path}, which does not exist "
                         "(run from the repository root, or pass --deepspeed)")
    accelerate = yaml.safe_load(accelerate_path.read_text()) or {}
    name = (accelerate.get("deepspeed_config") or {}).get("deepspeed_config_file")
    return (Path(name) if name else None), accelerate_path


def model_config(name: str) -> tuple[dict, str]:
    """config.json of a local checkpoint, else the released Klear config for a Klear name."""
    local = Path(name) / "config.json"
    if local.exists():
        return json.loads(local.read_text()), str(local)
    if "klear" not in name.lower():
        raise SystemExit(f"align.plan: {name} has no local config.json and is not a Klear name; "
                         "pass a local checkpoint directory as --model_name_or_path")
    from align.models.klear.configuration_klear import KlearConfig

    return KlearConfig().to_dict(), f"the released Klear-46B-A2.5B config (KlearConfig defaults; {name} is not local)"


def parallel_from(deepspeed: dict | None, gpus: int, nodes: int) -> Parallel:
    if deepspeed is None:
        return Parallel(world=gpus, nodes=nodes, zero_stage=0, deepspeed=False)
    zero = deepspeed.get("zero_optimization") or {}
    ep = deepspeed.get("expert_parallel") or {}

    def number(value):
        return None if value in (None, "auto") else int(float(value))

    def offloaded(section):
        return (zero.get(section) or {}).get("device", "none") in ("cpu", "nvme")

    return Parallel(
        world=gpus,
        nodes=nodes,
        zero_stage=int(zero.get("stage", 0)),
        ep_size=int(ep.get("autoep_size", 1)) if ep.get("enabled") else 1,
        offload_optimizer=offloaded("offload_optimizer"),
        offload_param=offloaded("offload_param"),
        grad_accum_dtype=(deepspeed.get("data_types") or {}).get("grad_accum_dtype"),
        sub_group_size=number(zero.get("sub_group_size")) or 10**9,
        reduce_bucket_size=number(zero.get("reduce_bucket_size")),
        prefetch_bucket_size=number(zero.get("stage3_prefetch_bucket_size")),
    )


def training_from(recipe: dict, stage: str) -> Training:
    lora = None
    if recipe.get("use_peft"):
        lora = Lora(
            r=int(recipe.get("lora_r", 16)),
            target_modules=tuple(recipe.get("lora_target_modules") or Lora().target_modules),
            target_parameters=tuple(recipe.get("lora_target_parameters") or ()),
        )
    if stage == "dpo":
        reference = "adapters_off" if lora else "precomputed" if recipe.get("precompute_ref_log_probs") else "copy"
        packing = bool(recipe.get("packed_pairs", True))
    else:
        reference, packing = "copy", bool(recipe.get("packing", False) or recipe.get("padding_free", False))
    dtype = recipe.get("dtype") or ("bfloat16" if recipe.get("bf16") else "float32")
    return Training(
        stage=stage,
        dtype="bfloat16" if dtype == "auto" else dtype,
        micro_batch=int(recipe.get("per_device_train_batch_size", 8)),
        max_length=int(recipe.get("max_length") or 1024),
        max_prompt_length=recipe.get("max_prompt_length"),
        gradient_checkpointing=bool(recipe.get("gradient_checkpointing", True)),  # TRL's configs default to True
        packing=packing,
        reference=reference,
        optim=str(recipe.get("optim", "adamw_torch")),
        lora=lora,
        freeze_router=bool(recipe.get("freeze_router", False)),
        gradient_accumulation_steps=int(recipe.get("gradient_accumulation_steps", 1)),
    )


def refuse_nonsense(args) -> None:
    """The flags' values that no machine has, refused by name (as align.sft refuses its own)."""
    checks = [
        ("--gpus", args.gpus, args.gpus is None or args.gpus >= 1, "at least 1"),
        ("--nodes", args.nodes, args.nodes is None or args.nodes >= 1, "at least 1"),
        ("--gpu-memory-gib", args.gpu_memory_gib, args.gpu_memory_gib > 0, "more than 0"),
        ("--runtime-gib", args.runtime_gib, args.runtime_gib >= 0, "0 or more"),
        ("--headroom", args.headroom, 0 <= args.headroom < 1, "a fraction from 0 up to, not including, 1"),
        ("--mfu", args.mfu, 0 < args.mfu <= 1, "a fraction above 0, at most 1"),
        ("--peak-tflops", args.peak_tflops, args.peak_tflops > 0, "more than 0"),
    ]
    for flag, value, ok, rule in checks:
        if not ok:
            raise SystemExit(f"align.plan: {flag} must be {rule}, got {value:g}")


def read_deepspeed_config(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"align.plan: --deepspeed {path}: no such file")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SystemExit(f"align.plan: {path} is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise SystemExit(f"align.plan: {path} holds a {type(config).__name__}, not a DeepSpeed config object")
    return config


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the recipe YAML (configs/sft|dpo/*.yaml)")
    parser.add_argument("--gpus", type=int, help="GPUs (processes) in all; default: the launcher's num_processes")
    parser.add_argument("--gpu-memory-gib", type=float, default=80.0, help="memory of one GPU (default 80)")
    parser.add_argument("--nodes", type=int, help="machines; default: the launcher's num_machines, else 1")
    parser.add_argument("--deepspeed", help="DeepSpeed JSON; default: the one the recipe's launcher names")
    parser.add_argument("--stage", choices=["sft", "dpo"], help="default: dpo when the recipe has DPO fields")
    parser.add_argument("--runtime-gib", type=float, default=1.0,
                        help="memory the runtime takes before any tensor: CUDA context and library workspaces "
                        "(default 1.0, an allowance); on CPU, the process's resident memory after imports")
    parser.add_argument("--headroom", type=float, default=0.05,
                        help="fraction of GPU memory kept free for allocator fragmentation (default 0.05)")
    parser.add_argument("--mfu", type=float, default=0.25, help="model FLOPs utilisation for the step time (0.25)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense bf16 peak of one GPU, TFLOP/s (default 989: H100/H200 SXM)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args, extra = parser.parse_known_args(argv)

    refuse_nonsense(args)
    recipe_path = Path(args.config)
    if not recipe_path.exists():
        raise SystemExit(f"align.plan: no recipe at {recipe_path}")
    recipe = yaml.safe_load(recipe_path.read_text()) or {}
    overrides = parse_overrides(extra)
    stage = args.stage or ("dpo" if any(k in recipe or k in overrides for k in DPO_ONLY_FIELDS) else "sft")
    if overrides:
        check_override_names(overrides, stage)
    recipe.update(overrides)

    ds_path, accelerate_path = deepspeed_config_path(recipe_path, args.deepspeed)
    deepspeed = read_deepspeed_config(ds_path) if ds_path else None
    accelerate = yaml.safe_load(accelerate_path.read_text()) if accelerate_path else {}
    gpus = args.gpus or int(accelerate.get("num_processes", 1))
    nodes = args.nodes or (int(accelerate.get("num_machines", 1)) if not args.gpus else max(1, gpus // 8))
    if nodes > gpus:
        nodes = 1

    config, config_source = model_config(str(recipe.get("model_name_or_path", "")))
    shape = ModelShape.from_config(config)
    parallel = parallel_from(deepspeed, gpus, nodes)
    sp_size = int((accelerate.get("parallelism_config") or {}).get("parallelism_config_sp_size", 1))
    parallel = replace(parallel, sp_size=sp_size)  # the launcher's Ulysses group size
    try:
        training = training_from(recipe, stage)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"align.plan: {recipe_path}: a batch size, length or step count is not a whole number "
                         f"({error})") from None
    for field, value in (("per_device_train_batch_size", training.micro_batch), ("max_length", training.max_length),
                         ("gradient_accumulation_steps", training.gradient_accumulation_steps)):
        if value < 1:
            raise SystemExit(f"align.plan: {recipe_path}: {field} must be at least 1, got {value}")
    runtime = args.runtime_gib * GIB
    try:
        result = plan(shape, parallel, training, runtime)
    except ValueError as error:
        raise SystemExit(f"align.plan: {error}") from None
    budget = args.gpu_memory_gib * GIB * (1 - args.headroom)
    fits = result.per_gpu["total"] <= budget
    timing = step_seconds(shape, parallel, training, args.mfu, args.peak_tflops)
    report = {
        "recipe": str(recipe_path),
        "stage": stage,
        "model_config": config_source,
        "deepspeed_config": str(ds_path) if ds_path else None,
        "gpus": gpus,
        "nodes": nodes,
        "gpu_memory_gib": args.gpu_memory_gib,
        "usable_gib": round(budget / GIB, 2),
        "zero_stage": parallel.zero_stage if parallel.deepspeed else None,
        "expert_parallel_size": parallel.ep_size,
        "sequence_parallel_size": parallel.sp_size,
        # the smallest Ulysses group (no expert parallelism) this recipe fits with on these GPUs
        "sequence_parallel_needed": smallest_sequence_parallel_size(
            shape, parallel, training, budget, runtime)["sp_size"] if stage == "sft" else None,
        "parameters": parameter_counts(shape),
        "trainable_parameters": result.trainable_parameters,
        "tokens_per_micro_batch": training.tokens_per_micro_batch(),
        "reference": training.reference if stage == "dpo" else None,
        "per_gpu_gib": result.gib(),
        "fits": fits,
        "cpu_memory_per_node_gib": round(result.cpu_per_node / GIB, 2),
        "would_fit_with": [] if fits else fitting_changes(shape, parallel, training, budget, runtime),
        "step_time": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in timing.items()},
        "notes": result.notes,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report, shape, parallel))
    return report


def render(report: dict, shape: ModelShape, parallel: Parallel) -> str:
    g = report["per_gpu_gib"]
    params = report["parameters"]
    lines = [
        f"{report['recipe']} ({report['stage'].upper()}) on {report['gpus']} GPUs x {report['gpu_memory_gib']:g} GiB "
        f"({report['nodes']} node(s)); DeepSpeed: {report['deepspeed_config'] or 'none'}",
        f"model: {report['model_config']}",
        f"  {params['total'] / 1e9:.2f}B parameters ({params['routed_experts'] / 1e9:.2f}B in routed experts), "
        f"{report['trainable_parameters'] / 1e9:.3f}B trainable; "
        f"{report['tokens_per_micro_batch']} tokens per micro-batch",
    ]
    if parallel.deepspeed and parallel.zero_stage >= 3:
        ep = parallel.ep_size
        lines.append(
            f"  ZeRO-3 partitions the non-expert parameters over all {parallel.world} GPUs; expert parallel {ep} "
            f"gives each GPU {shape.num_experts // ep} of the {shape.num_experts} experts per layer, which ZeRO-3 "
            f"partitions over the {parallel.world // ep} GPUs holding the same experts: "
            f"1/{parallel.world} of each either way"
        )
    lines.append("per GPU (GiB):")
    for name in ("weights", "gradients", "optimizer", "activations", "reference", "vllm_colocate", "buffers", "runtime"):
        lines.append(f"  {name:<12} {g[name]:8.2f}")
    lines.append(f"  {'total':<12} {g['total']:8.2f}   of {report['usable_gib']:.1f} usable")
    lines.append(("FITS" if report["fits"] else "DOES NOT FIT") + f" on {report['gpu_memory_gib']:g} GiB GPUs")
    if report["cpu_memory_per_node_gib"]:
        lines.append(f"CPU memory per node for offloaded state: {report['cpu_memory_per_node_gib']:.1f} GiB")
    if not report["fits"]:
        options = report["would_fit_with"]
        lines.append("would fit with: " + ("; ".join(f"{o['change']} ({o['total_gib']} GiB)" for o in options)
                                           if options else "no single change; combine several (see --json)"))
    t = report["step_time"]
    lines.append(f"step time at {t['mfu']:.0%} MFU of {t['peak_tflops_per_gpu']:g} TFLOP/s: {t['seconds']:.1f} s "
                 f"for {t['tokens_per_step']} tokens ({t['tokens_per_s']:.0f} tokens/s)")
    lines.extend(f"note: {note}" for note in report["notes"])
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
