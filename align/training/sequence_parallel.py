"""Sequence-parallel SFT (DeepSpeed Ulysses through accelerate's `parallelism_config`): which settings run,
checked when the trainer is built, and the pieces that make a group of ranks train like one.

The launcher turns it on (`configs/accelerate/*-sp.yaml`: `parallelism_config_sp_size: N`,
`parallelism_config_sp_backend: deepspeed`). Each rank of a group then holds `1/N` of every sequence:
embeddings, norms, the router and the experts work on that slice; attention all-to-alls to the whole
sequence with `heads/N` heads and back. What runs with DeepSpeed 0.19.8 and accelerate 1.15 (read in their
code, tried on 2 CPU processes; docs/long-context.md):

- ZeRO-3 (or 1/2) **without** expert parallelism: the supported path;
- AutoEP, under any ZeRO stage: the engine takes the Ulysses group for tensor parallelism and refuses it
  while it sets up AutoEP (runtime/engine.py:836, "AutoEP does not currently support tensor model parallelism
  from mpu (bwc_tensor_model_parallel_world_size=2)"; seen on 2 CPU processes with ZeRO-2 and with ZeRO-3).
  Under ZeRO-3 a later check refuses it as well (runtime/engine.py:2220, "AutoEP with ZeRO Stage 3 does not
  support sequence parallelism yet"); no check refuses ZeRO-1/2 before line 836.

Both are refused here, when the trainer is built (before the engine and the first step), in one line that
names both settings.
"""

from __future__ import annotations

import torch

ATTENTION_FOR_SEQUENCE_PARALLEL = ("sdpa", "flash_attention_2", "flash_attention_3")


def sequence_parallel_size(accelerator) -> int:
    config = getattr(accelerator, "parallelism_config", None)
    if config is None or getattr(config, "sp_backend", None) != "deepspeed":
        return 1
    return config.sp_size or 1


def check_sequence_parallel_setup(sp_size: int, deepspeed_config: dict | None, model_config,
                                  attn_implementation: str | None, sp_attn_implementation: str | None) -> None:
    """Refuse, in one line naming both settings, every combination with sequence parallelism that does not run
    (or would train something else than one process would). Nothing is checked when `sp_size` is 1."""
    if sp_size <= 1:
        return
    where = f"sequence parallelism (parallelism_config_sp_size {sp_size} in the accelerate config)"
    if deepspeed_config is None:
        raise ValueError(f"{where} needs DeepSpeed (distributed_type: DEEPSPEED); the launcher has none")
    stage = (deepspeed_config.get("zero_optimization") or {}).get("stage", 0)
    expert_parallel = deepspeed_config.get("expert_parallel") or {}
    if expert_parallel.get("enabled"):
        reason = ("DeepSpeed 0.19.8's engine takes the sequence-parallel group for tensor parallelism, which AutoEP "
                  "refuses (runtime/engine.py:836" + (", and engine.py:2220 refuses AutoEP with ZeRO-3 and sequence "
                                                      "parallelism" if stage == 3 else "") + ")")
        raise ValueError(
            f"{where} cannot run with expert parallelism (expert_parallel.enabled with autoep_size "
            f"{expert_parallel.get('autoep_size')} and ZeRO stage {stage} in the DeepSpeed config): {reason}; use "
            "configs/deepspeed/zero3-sp.json (ZeRO-3 without expert_parallel) with sequence parallelism"
        )
    heads, kv_heads = model_config.num_attention_heads, model_config.num_key_value_heads
    if heads % sp_size or (kv_heads % sp_size and sp_size % kv_heads):
        raise ValueError(f"{where} needs num_attention_heads ({heads}) divisible by it and num_key_value_heads "
                         f"({kv_heads}) divisible by it or dividing it (model config)")
    if attn_implementation not in ATTENTION_FOR_SEQUENCE_PARALLEL:
        raise ValueError(f"{where} cannot run with attn_implementation {attn_implementation!r} (recipe): use one of "
                         f"{', '.join(ATTENTION_FOR_SEQUENCE_PARALLEL)}")
    if sp_attn_implementation != attn_implementation:
        raise ValueError(f"{where} with parallelism_config_sp_attn_implementation {sp_attn_implementation!r} "
                         f"(accelerate config) must match the recipe's attn_implementation {attn_implementation!r}")


def prepare_trainer_for_sequence_parallelism(trainer, sp_size: int) -> None:
    """Once the trainer is built: the gloo-safe Ulysses batches and, for sdpa, the document-aware attention."""
    if sp_size <= 1:
        return
    import deepspeed

    from .compat import install_packed_sdpa, use_equal_size_ulysses_adapter

    # DeepSpeed's `initialize_sequence_parallel` asserts that deepspeed.comm is up when accelerate registers
    # Ulysses; only ZeRO-3's partitioned loading (zero3_init_flag) has brought it up by then.
    if not deepspeed.comm.is_initialized():
        deepspeed.init_distributed(dist_backend=torch.distributed.get_backend())
    use_equal_size_ulysses_adapter(trainer.accelerator)
    if trainer.model.config._attn_implementation == "sdpa":
        install_packed_sdpa()
