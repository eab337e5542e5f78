"""The RL trainer: TRL's GRPOTrainer with GPPO, DAPO's zero-variance filter, α·NLL on correct rollouts, rollout
records, and Klear's MoE metrics and gathering save. TRL's private methods are reached through
`align.training.compat.GRPOHooks` only.

Zero-variance groups: a group (the `num_generations` rollouts of one prompt) whose rewards are all equal has
zero advantage everywhere, so it moves nothing but still dilutes the token-mean loss (and would train α·NLL
on a prompt the policy already always solves). DAPO resamples until the batch is full of informative groups;
here they are *dropped from the loss* instead (their completion mask is zeroed before the loss and its token
count are formed), so a step costs one generation, never an open-ended number. Each step logs how many
groups were dropped (`rewards/zero_variance_groups`, and the fraction); the run's totals land in
`training_summary.json` (`rl.zero_variance_groups`, `rl.groups`).

Weight sync to vLLM (`use_vllm`): before each generation batch, each colocated engine, or the server, gets the whole
policy, buffers included (`align.rl.vllm_sync`); under DeepSpeed AutoEP, where each rank holds only its share of the
experts, fused and renamed, every expert is gathered from its owner rank (`align.training.autoep.iter_full_weights`,
the final save's gather). A server is reached through `align.rl.vllm_client.KlearVLLMClient`.
"""

import math
from pathlib import Path

import torch
from trl import GRPOTrainer

from align.common.files import write_jsonl
from align.rl.gppo import gppo_per_token_loss
from align.rl.vllm_server import server_mode
from align.training.compat import GRPOHooks, trl_vllm_generation
from align.training.trainer import KlearTrainerMixin


def group_flags(totals: torch.Tensor, num_generations: int, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`(zero_variance, correct)` per rollout from the weighted total rewards `[rollouts]` (NaN: unscored), in
    group order: zero_variance when every scored rollout of its group earned the same reward (or none was
    scored), correct when its total is at least `threshold`."""
    groups = totals.view(-1, num_generations)
    scored = ~torch.isnan(groups)
    high = torch.where(scored, groups, -math.inf).max(dim=1).values
    low = torch.where(scored, groups, math.inf).min(dim=1).values
    zero_variance = ~(high > low)  # also true when a group has fewer than two scored rollouts
    correct = (totals >= threshold) & ~torch.isnan(totals)
    return zero_variance.repeat_interleave(num_generations), correct


class KlearGRPOTrainer(KlearTrainerMixin, GRPOHooks, GRPOTrainer):
    def __init__(self, *args, **kwargs):
        # colocated engines (vllm_enforce_eager is colocate mode's only: align.rl.config refuses it elsewhere) sample
        # in the policy's dtype: TRL passes none, so vLLM took the checkpoint's (a float32 policy's rollouts in bf16)
        engine_options = {"enforce_eager": True} if kwargs["args"].vllm_enforce_eager else {}
        policy_dtype = getattr(kwargs.get("model"), "dtype", None)
        if isinstance(policy_dtype, torch.dtype):
            engine_options["dtype"] = policy_dtype
        client_class = None
        if server_mode(kwargs["args"]):
            from align.rl.vllm_client import KlearVLLMClient  # imports vLLM: only when generating with it

            client_class = KlearVLLMClient
        with trl_vllm_generation(engine_options, client_class):
            super().__init__(*args, **kwargs)
        if self.use_vllm:
            from align.rl.vllm_sync import use_vllm_sync

            use_vllm_sync(self)
        self.rl_counts = {"groups": 0, "zero_variance_groups": 0, "rollouts": 0, "correct_rollouts": 0}
        self._rollout_batches = 0

    # ---- after generation and scoring: the whole batch's rewards ----

    def _on_scored_batch(self, batch: dict) -> dict:
        if not self.model.training:
            return batch
        rollouts = self._last_rollouts()  # every rank's, in group order
        rewards = torch.tensor([[r["rewards"][name] for name in self.reward_func_names] for r in rollouts],
                               dtype=torch.float32).reshape(len(rollouts), -1)
        weighted = rewards * self.reward_weights.cpu().float().unsqueeze(0)
        totals = torch.where(torch.isnan(rewards).all(dim=1), torch.nan, weighted.nansum(dim=1))
        zero_variance, correct = group_flags(totals, self.num_generations, self.args.correct_reward_threshold)

        # Each rollout's prompt tokens and completion tokens (those in the loss mask), every rank's, in group order.
        lengths = self.accelerator.gather(torch.stack([batch["prompt_mask"].sum(dim=1),
                                                       batch["completion_mask"].sum(dim=1)], dim=1)).cpu()
        local = batch["completion_ids"].size(0)
        mine = slice(self.accelerator.process_index * local, (self.accelerator.process_index + 1) * local)
        device = batch["completion_mask"].device
        kept = ~zero_variance if self.args.drop_zero_variance_groups else torch.ones_like(zero_variance)  # every rank's
        keep = kept[mine].to(device)  # this rank's
        if self.args.drop_zero_variance_groups:
            batch["completion_mask"] = batch["completion_mask"] * keep.unsqueeze(1).to(batch["completion_mask"].dtype)
            batch["num_items_in_batch"] = self.accelerator.gather(batch["completion_mask"].sum()).sum()
        # The tokens trained on (the summary's train_tokens): prompt + completion tokens of the kept rollouts.
        self.state.num_input_tokens_seen += int(lengths[kept].sum())
        self._set_metric("num_tokens", self.state.num_input_tokens_seen)
        batch["correct"] = (correct[mine].to(device) & keep).float()
        batch["num_correct_items"] = self.accelerator.gather(
            (batch["completion_mask"] * batch["correct"].unsqueeze(1)).sum()).sum()

        groups = len(rollouts) // self.num_generations
        dropped = int(zero_variance.sum()) // self.num_generations
        self._record_metric("rewards/accuracy", correct.float().mean().item())
        self._record_metric("rewards/zero_variance_groups", float(dropped))
        self._record_metric("rewards/zero_variance_fraction", dropped / max(groups, 1))
        for key, value in (("groups", groups), ("zero_variance_groups", dropped), ("rollouts", len(rollouts)),
                           ("correct_rollouts", int(correct.sum()))):
            self.rl_counts[key] += value
        if self.args.record_rollouts and self.accelerator.is_main_process:
            self._write_rollouts(rollouts, totals, zero_variance, correct, lengths.tolist())
        return batch

    def _write_rollouts(self, rollouts, totals, zero_variance, correct, lengths) -> None:
        self._rollout_batches += 1
        step = self.state.global_step
        for i, row in enumerate(rollouts):
            row.update(step=step, group=i // self.num_generations, total_reward=_number(totals[i]),
                       prompt_tokens=lengths[i][0], completion_tokens=lengths[i][1],
                       correct=bool(correct[i]), zero_variance_group=bool(zero_variance[i]))
        path = Path(self.args.output_dir) / "rollouts" / f"batch_{self._rollout_batches:06d}.jsonl"
        write_jsonl(path, rollouts)

    # ---- the loss ----

    def _token_normalizer(self, count: torch.Tensor) -> torch.Tensor:
        """TRL's `dapo` aggregation (a token mean over the whole generation batch) for this micro-batch."""
        normalizer = count.clamp(min=1.0) / self.accelerator.num_processes
        if self.model.training:
            normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
        return normalizer

    def _gppo_loss(self, inputs, per_token_logps, entropies, aux_loss):
        mask = inputs["completion_mask"]
        advantages = inputs["advantages"]
        if advantages.dim() == 1:
            advantages = advantages.unsqueeze(1)
        old = inputs.get("old_per_token_logps")
        old = per_token_logps.detach() if old is None else old
        terms = gppo_per_token_loss(per_token_logps - old, advantages, self.epsilon_low, self.epsilon_high,
                                    self.args.gppo_beta1, self.args.gppo_beta2, self.args.dual_clip)
        per_token_loss = terms.per_token_loss
        if self.use_vllm and self.vllm_importance_sampling_correction:
            per_token_loss = per_token_loss * inputs["importance_sampling_ratio"]
        if self.beta != 0.0:
            delta = inputs["ref_per_token_logps"] - per_token_logps
            per_token_kl = torch.exp(delta) - delta - 1
            per_token_loss = per_token_loss + self.beta * per_token_kl
        loss = (per_token_loss * mask).sum() / self._token_normalizer(inputs["num_items_in_batch"])

        def mean(x):  # over every rank's completion tokens
            totals = self.accelerator.reduce(torch.stack([(x * mask).sum(), mask.sum().float()]), reduction="sum")
            return (totals[0] / totals[1].clamp(min=1.0)).item()

        if self.args.nll_alpha and "correct" in inputs:
            correct_mask = mask * inputs["correct"].unsqueeze(1)
            nll = -(per_token_logps * correct_mask).sum() / self._token_normalizer(inputs["num_correct_items"])
            loss = loss + self.args.nll_alpha * nll
            self._record_metric("logps/nll_correct", self.accelerator.gather(nll.detach()).mean().item())
        if self.aux_loss_enabled:
            steps = self.current_gradient_accumulation_steps if self.model.training else 1.0
            loss = loss + self.router_aux_loss_coef * aux_loss / steps
            self._record_metric("aux_loss", self.accelerator.gather(aux_loss.detach()).mean().item())
        if self.beta != 0.0:
            self._record_metric("kl", mean(per_token_kl))
        self._record_metric("entropy", mean(entropies))
        self._record_metric("clip_ratio/low_mean", mean(terms.low_clipped.float()))
        self._record_metric("clip_ratio/high_mean", mean(terms.high_clipped.float()))
        self._record_metric("clip_ratio/region_mean", mean((terms.low_clipped | terms.high_clipped).float()))
        self._record_metric("clip_ratio/dual_mean", mean(terms.dual_clipped.float()))
        return loss

    def rl_summary(self) -> dict:
        """The run's RL counts for `training_summary.json`."""
        counts = dict(self.rl_counts)
        counts["zero_variance_policy"] = "dropped from the loss" if self.args.drop_zero_variance_groups else "kept"
        counts["accuracy"] = counts["correct_rollouts"] / counts["rollouts"] if counts["rollouts"] else None
        return counts


def _number(value: torch.Tensor) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
