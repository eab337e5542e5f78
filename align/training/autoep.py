"""DeepSpeed AutoEP expert parallelism for Klear: the preset, a config check, and saving.

No AutoEP preset ships for Klear, so `register_klear_preset()` adds one at run time (every rank,
before `deepspeed.initialize`; the training entry points call it). It targets `mlp.routed`
(router + expert bias + fused experts, see `modeling_klear`), which AutoEP replaces with its
`AutoEPMoELayer`; the shared expert and the softmax blend stay in the enclosing block, which no
preset could express. AutoEP's router is Klear's: sigmoid scores, choice by scores plus
`e_score_correction_bias`, weights from the unbiased scores, renormalised. The preset's adapter
points transformers' router-logit recorder at AutoEP's gate, so the auxiliary loss still works, and
makes that gate compute in float32 like Klear's own router (see `compat.register_autoep_preset`).

Two things need care (both found by running it):
- AutoEP multiplies the routing weights by `routed_scaling_factor`, read from the model config
  unless the DeepSpeed config says otherwise; Klear declares 2.5 but applies nothing, so the
  DeepSpeed config must set `"routed_scaling_factor": 1.0`. `check_expert_parallel_config` refuses
  to train otherwise.
- DeepSpeed cannot consolidate a ZeRO-3 + AutoEP model (`_zero3_consolidated_16bit_state_dict`
  raises), so `gather_full_state_dict` rebuilds the full model on rank 0 itself: ordinary
  parameters through ZeRO's gather, experts through an all-gather over the expert-parallel group.
  The RL stage's weight sync to colocated vLLM engines walks the same gather (`iter_full_weights`)
  on every rank, since each rank's engine needs every expert.
"""

from collections import OrderedDict

import torch

from .compat import autoep_experts_for_rank, autoep_layers, persistent_buffers, register_autoep_preset

KLEAR_PRESET_NAME = "klear"


def register_klear_preset() -> None:
    """Make `"preset_model": "klear"` (and detection from model_type "Klear") known to AutoEP."""
    register_autoep_preset(
        KLEAR_PRESET_NAME,
        display_name="Klear",
        model_types=("Klear", "klear"),
        # any prefix: PEFT wraps the model (base_model.model.model.layers...)
        moe_layer_pattern=r"(?:.*\.)?model\.layers\.\d+\.mlp\.routed",
        router_pattern="gate",
        experts_pattern="experts",
        expert_storage="fused_3d",
        expert_w1="gate_up_proj",
        expert_w2="down_proj",
        expert_w3=None,  # gate and up are fused in gate_up_proj
        num_experts_attr="num_experts",
        top_k_attr="num_experts_per_tok",
        score_func="sigmoid",
        score_apply="post",
        route_norm=True,
        gate_bias=False,
        has_shared_experts=False,  # the shared expert and the blend stay outside the replaced module
        supports_expert_bias=False,  # AutoEP's own bias balancing is disabled; align updates the bias
    )


def expert_parallel_section(deepspeed_config: dict | None) -> dict | None:
    section = (deepspeed_config or {}).get("expert_parallel")
    return section if section and section.get("enabled") else None


def check_expert_parallel_config(deepspeed_config: dict | None, model_config) -> None:
    """Refuse DeepSpeed settings that would silently change Klear's routing."""
    section = expert_parallel_section(deepspeed_config)
    if section is None:
        return
    scale = section.get("routed_scaling_factor", "auto")
    if scale == "auto" or float(scale) != 1.0:
        raise ValueError(
            f"DeepSpeed expert_parallel.routed_scaling_factor is {scale!r}: AutoEP would scale Klear's routing "
            f"weights by it (or by config.routed_scaling_factor={model_config.routed_scaling_factor}), which no "
            'released Klear implementation does. Set "routed_scaling_factor": 1.0 in the DeepSpeed config.'
        )
    if section.get("load_balance_coeff") is not None:
        raise ValueError(
            "DeepSpeed expert_parallel.load_balance_coeff must be null for Klear: use the recipe's "
            "`expert_bias_update: aux_free` to balance with Klear's own expert bias."
        )
    size = int(section.get("autoep_size", 1))
    if model_config.num_experts % size:
        raise ValueError(f"autoep_size={size} does not divide num_experts={model_config.num_experts}")


def _gather_experts(layer) -> list[torch.Tensor]:
    """The full [num_experts, ...] w1, w2, w3 of an AutoEP layer (collective: every rank calls it)."""
    import deepspeed
    import deepspeed.comm as dist

    weights = [layer.experts.w1, layer.experts.w2, layer.experts.w3]
    # ZeRO-3 partitions each rank's local experts over its expert-data-parallel group first.
    with deepspeed.zero.GatheredParameters(weights, modifier_rank=None):
        local = [w.detach().clone() for w in weights]
    if layer.ep_size == 1:
        return local
    placement = [autoep_experts_for_rank(layer, r) for r in range(layer.ep_size)]
    full = []
    for tensor in local:
        pieces = [torch.empty_like(tensor) for _ in range(layer.ep_size)]
        dist.all_gather(pieces, tensor.contiguous(), group=layer.ep_group)
        out = torch.empty((layer.num_experts, *tensor.shape[1:]), dtype=tensor.dtype)
        for rank_experts, piece in zip(placement, pieces, strict=True):
            out[rank_experts] = piece.cpu()
        full.append(out)
    return full


def iter_full_weights(model):
    """`(name, tensor)` for the whole model, one module's tensors at a time, on every rank, under the in-memory
    Klear names (`mlp.routed.experts.gate_up_proj`, `mlp.routed.gate.weight`, ...) as if AutoEP had never
    replaced anything: ordinary parameters (and persistent buffers) through ZeRO's gather, each AutoEP layer's
    experts all-gathered from their owner ranks. CPU copies, taken before the gather ends. Collective: every rank
    iterates to the end, in the same order."""
    import deepspeed

    replaced = {id(layer) for layer in autoep_layers(model)}

    def visit(module, prefix: str):
        if id(module) in replaced:
            w1, w2, w3 = _gather_experts(module)
            router_params = list(module.router.parameters())
            with deepspeed.zero.GatheredParameters(router_params, modifier_rank=None):
                gate_weight = module.router.gate.weight.detach().clone().cpu()
            yield prefix + "gate.weight", gate_weight
            yield prefix + "gate.e_score_correction_bias", module.router.e_score_correction_bias.detach().cpu()
            yield prefix + "experts.gate_up_proj", torch.cat([w1, w3], dim=1).cpu()
            yield prefix + "experts.down_proj", w2.cpu()
            return
        own = list(module.parameters(recurse=False))
        with deepspeed.zero.GatheredParameters(own, modifier_rank=None):
            tensors = [(prefix + name, param.detach().clone().cpu())
                       for name, param in module.named_parameters(recurse=False)]
            tensors += [(prefix + name, buffer.detach().clone().cpu())
                        for name, buffer in persistent_buffers(module)]
        yield from tensors
        for name, child in module.named_children():
            yield from visit(child, prefix + name + ".")

    yield from visit(model, "")


def gather_full_state_dict(model) -> "OrderedDict[str, torch.Tensor] | None":
    """The whole model's state dict under the in-memory Klear names (`iter_full_weights`). Collective; returns the
    dict on rank 0, else None."""
    import deepspeed.comm as dist

    is_main = not dist.is_initialized() or dist.get_rank() == 0
    state = OrderedDict() if is_main else None
    for name, tensor in iter_full_weights(model):
        if is_main:
            state[name] = tensor
    return state
