"""MoE-specific training: router freezing, expert-load metrics and the auxiliary-loss-free bias update.

`ExpertLoadCounter` hangs a forward hook on every router, Klear's own or, under expert parallelism,
DeepSpeed AutoEP's replacement, and counts the tokens each expert receives in int64. It counts
training forwards only: not evaluation, and not the recompute of a gradient-checkpointed layer
(which runs inside the backward pass), so each routed token is counted exactly once. After each
optimiser step `ExpertLoadCallback` sums the counts over all ranks, resets them, optionally nudges
each layer's expert bias against its load (DeepSeek-V3's auxiliary-loss-free balancing), and keeps
the totals for the `moe/*` metrics that the trainer logs and the training summary.
"""

import math

import torch
from transformers import TrainerCallback

from align.models.klear import KlearRouter

from .compat import autoep_layers, autoep_routers, in_backward_pass


def routers_with_selection(model) -> list[tuple[torch.nn.Module, int]]:
    """`(router, i)` per sparse layer in layer order; `router(x)[i]` is its `[tokens, top_k]` choice."""
    native = [(m, 2) for m in model.modules() if isinstance(m, KlearRouter)]  # (logits, weights, index)
    return native + autoep_routers(model)


class ExpertLoadCounter:
    """int64 token counts per routed expert, `[num_layers, num_experts]`, from forward hooks."""

    def __init__(self, model):
        self.routers = routers_with_selection(model)
        self.counts = [torch.zeros(r.num_experts, dtype=torch.int64) for r, _ in self.routers]
        # `[tokens]` bool, True for the tokens to count; None counts every routed token. Sequence parallelism
        # sets it to skip the padding that makes a row divisible by the group size.
        self.real_tokens: torch.Tensor | None = None
        self._handles = [router.register_forward_hook(self._hook(i)) for i, (router, _) in enumerate(self.routers)]

    def _hook(self, layer: int):
        selection = self.routers[layer][1]

        def count(module, args, output):
            if not module.training or in_backward_pass():
                return
            chosen = output[selection].detach()
            if self.real_tokens is not None and self.real_tokens.numel() == chosen.shape[0]:
                chosen = chosen[self.real_tokens.to(chosen.device)]
            chosen = chosen.reshape(-1)
            self.counts[layer] += torch.bincount(chosen, minlength=module.num_experts).cpu()[: module.num_experts]

        return count

    def pop(self) -> torch.Tensor:
        """The counts since the last call (this rank's), resetting them."""
        counts = torch.stack(self.counts) if self.counts else torch.zeros(0, 0, dtype=torch.int64)
        for c in self.counts:
            c.zero_()
        return counts

    def biases(self) -> list[torch.Tensor]:
        return [router.e_score_correction_bias for router, _ in self.routers]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def expert_parallel_layout(model) -> list[dict]:
    """Per rank: the routed experts it holds and the local shape of their weights (collective)."""
    layers = autoep_layers(model)
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
    load = load.double()
    bias.add_(rate * torch.sign(load.mean() - load).to(bias.dtype))


class ExpertLoadCallback(TrainerCallback):
    """Per optimiser step: all-reduce the expert loads, reset the counters, update the bias if asked.

    Counts gathered since the last logging step are handed to the trainer by `pop_metrics()`.
    """

    def __init__(self, bias_update_rate: float | None = None):
        self.bias_update_rate = bias_update_rate
        self.counter: ExpertLoadCounter | None = None
        self._since_log: torch.Tensor | None = None
        self.total: torch.Tensor | None = None  # the whole run's int64 loads, for the training summary
        self.expert_layout: list[dict] | None = None  # which rank holds which experts, seen in training

    def set_real_tokens(self, mask: torch.Tensor | None) -> None:
        """Count only the tokens where `mask` (any shape, one entry per token of the next forward) is True."""
        if self.counter is not None:
            self.counter.real_tokens = None if mask is None else mask.reshape(-1).bool()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # Here, not earlier: under DeepSpeed, AutoEP replaces the routers when the engine is built.
        self.expert_layout = expert_parallel_layout(model)
        if self.counter is not None:
            self.counter.remove()
        self.counter = ExpertLoadCounter(model)

    @torch.no_grad()
    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.counter is None or not self.counter.routers:
            return
        loads = self.counter.pop()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Every rank routes its own tokens: other sequences under data parallelism, another slice of the same
            # sequences under sequence parallelism; either way the sum over all ranks counts each token once.
            torch.distributed.all_reduce(loads)
        if self.bias_update_rate:
            for bias, load in zip(self.counter.biases(), loads, strict=True):
                aux_free_bias_update(bias, load.to(bias.device), self.bias_update_rate)
        self._since_log = loads if self._since_log is None else self._since_log + loads
        self.total = loads if self.total is None else self.total + loads

    def on_train_end(self, args, state, control, **kwargs):
        if self.counter is not None:
            self.counter.remove()

    def pop_metrics(self) -> dict[str, float]:
        if self._since_log is None:
            return {}
        metrics = load_metrics(self._since_log)
        self._since_log = None
        return metrics
