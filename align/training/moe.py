"""MoE-specific training: router freezing, expert-load metrics and the auxiliary-loss-free bias update.

The tokens routed to each expert are counted in the forward pass, by Klear's router
(`expert_load`) or, under expert parallelism, by DeepSpeed's `AutoEPMoELayer`
(`tokens_per_expert`). After each optimiser step `ExpertLoadCallback` sums the counts over all
ranks, resets them, optionally nudges each layer's expert bias against its load (DeepSeek-V3's
auxiliary-loss-free balancing), and keeps the totals for the `moe/*` metrics that the trainer logs.
"""

import math

import torch
from transformers import TrainerCallback


def expert_load_counters(model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`(token_counts, expert_bias)` per sparse layer, in layer order, with or without AutoEP."""
    counters = []
    for module in model.modules():
        if hasattr(module, "expert_load") and hasattr(module, "e_score_correction_bias"):  # KlearRouter
            counters.append((module.expert_load, module.e_score_correction_bias))
        elif hasattr(module, "tokens_per_expert") and hasattr(module, "router"):  # DeepSpeed AutoEPMoELayer
            counters.append((module.tokens_per_expert, module.router.e_score_correction_bias))
    return counters


def expert_parallel_layout(model) -> list[dict]:
    """Per rank: the routed experts it holds and the local shape of their weights (collective)."""
    layers = [m for m in model.modules() if hasattr(m, "tokens_per_expert") and hasattr(m, "ep_rank")]
    local = {
        "rank": torch.distributed.get_rank() if torch.distributed.is_initialized() else 0,
        "expert_parallel_rank": layers[0].ep_rank if layers else 0,
        "experts_held": layers[0].num_local_experts if layers else None,
        "experts_total": layers[0].num_experts if layers else None,
        # ZeRO-3 keeps the logical shape of a partitioned parameter in `ds_shape`
        "w1_shape": list(getattr(layers[0].experts.w1, "ds_shape", layers[0].experts.w1.shape)) if layers else None,
    }
    if not torch.distributed.is_initialized():
        return [local]
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, local)
    return gathered


def freeze_routers(model) -> int:
    """Stop gradient updates of every router weight; returns how many were frozen."""
    frozen = 0
    for name, param in model.named_parameters():
        if name.endswith("mlp.routed.gate.weight"):
            param.requires_grad_(False)
            frozen += 1
    return frozen


def load_metrics(loads: torch.Tensor) -> dict[str, float]:
    """`moe/*` figures from token counts `[num_layers, num_experts]`, averaged over layers.

    - `moe/max_load_share`: share of the routed tokens taken by the busiest expert (1/E is perfect);
    - `moe/load_entropy`: entropy of the load over log(E), 1.0 is perfectly even;
    - `moe/unused_experts`: experts that got no token. Klear routes without a capacity limit, so no
      token is ever dropped; an unused expert is the failure mode to watch.
    Per layer, `moe/layer_{i}/max_load_share` too.
    """
    loads = loads.double()
    num_experts = loads.shape[-1]
    totals = loads.sum(-1, keepdim=True).clamp(min=1)
    share = loads / totals
    entropy = -(share * share.clamp(min=1e-12).log()).sum(-1) / math.log(num_experts)
    metrics = {
        "moe/max_load_share": share.max(-1).values.mean().item(),
        "moe/load_entropy": entropy.mean().item(),
        "moe/unused_experts": (loads == 0).sum(-1).double().mean().item(),
    }
    for i, layer_share in enumerate(share.max(-1).values.tolist()):
        metrics[f"moe/layer_{i}/max_load_share"] = layer_share
    return metrics


def aux_free_bias_update(bias: torch.Tensor, load: torch.Tensor, rate: float) -> None:
    """DeepSeek-V3's update: raise the bias of under-loaded experts, lower it for over-loaded ones."""
    bias.add_(rate * torch.sign(load.mean() - load).to(bias.dtype))


class ExpertLoadCallback(TrainerCallback):
    """Per optimiser step: all-reduce the expert loads, reset the counters, update the bias if asked.

    Counts gathered since the last logging step are handed to the trainer by `pop_metrics()`.
    """

    def __init__(self, bias_update_rate: float | None = None):
        self.bias_update_rate = bias_update_rate
        self._since_log: torch.Tensor | None = None
        self.total: torch.Tensor | None = None  # the whole run's loads, for the training summary
        self.expert_layout: list[dict] | None = None  # which rank holds which experts, seen in training

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.expert_layout = expert_parallel_layout(model)

    @torch.no_grad()
    def on_step_end(self, args, state, control, model=None, **kwargs):
        counters = expert_load_counters(model)
        if not counters:
            return
        loads = torch.stack([counts.detach().float().cpu() for counts, _ in counters])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(loads)  # every rank routes its own tokens
        for (counts, bias), load in zip(counters, loads, strict=True):
            counts.zero_()
            if self.bias_update_rate:
                aux_free_bias_update(bias, load.to(bias.device), self.bias_update_rate)
        self._since_log = loads if self._since_log is None else self._since_log + loads
        self.total = loads if self.total is None else self.total + loads

    def pop_metrics(self) -> dict[str, float]:
        if self._since_log is None:
            return {}
        metrics = load_metrics(self._since_log)
        self._since_log = None
        return metrics
