"""The RL stage's recipe: TRL's `GRPOConfig` plus Klear's fields (`KlearArguments`) plus GPPO's.

One flat YAML holds everything and TRL's parser refuses unknown keys. Fields added here:

- `reward_funcs`: built-in reward names or dotted paths (`align.rl.rewards`); `reward_weights` is TRL's.
- `loss_type: gppo` next to TRL's own losses, with `gppo_beta1`/`gppo_beta2` (the gradient kept on clipped
  tokens), `dual_clip` (c on negative advantages) and `nll_alpha` (α·NLL on correct rollouts).
- `correct_reward_threshold`: a rollout is *correct* when its weighted total reward (the sum TRL's
  advantages start from) is at least this; the `rewards/accuracy` metric and α·NLL use it.
- `drop_zero_variance_groups`: groups whose rewards are all equal leave the loss (DAPO's filter, see
  `align.rl.trainer`), counted per step (`rewards/zero_variance_groups`) and in the summary.
- `vllm_enforce_eager`: colocate mode's engines built without torch.compile (vLLM's `enforce_eager`).
- `record_rollouts`: every rollout with its rewards in `output_dir/rollouts/step_XXXXXX.jsonl`.

MoE defaults differ from SFT/DPO: the router auxiliary loss is off (`router_aux_loss_coef: 0.0`; keeping it
on degraded GRPO on an MoE in NeMo-RL, issue 3169) and the expert bias frozen (`expert_bias_update: frozen`).
"""

from dataclasses import dataclass, field

from trl import GRPOConfig

from align.rl.vllm_server import colocate_mode
from align.training.config import KlearArguments

# TRL 1.16's GRPOTrainer losses; `gppo` is computed by align.rl.gppo.
TRL_LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
LOSS_TYPES = (*TRL_LOSS_TYPES, "gppo")


@dataclass
class KlearGRPOConfig(KlearArguments, GRPOConfig):
    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={"help": "Reward functions by built-in name (math, code, think_format) or dotted path "
                  "(mypkg.rewards.my_reward), each TRL's f(completions, **columns) -> list[float]; weights: "
                  "reward_weights."},
    )
    gppo_beta1: float = field(
        default=1.0,
        metadata={"help": "loss_type gppo: scale of the gradient kept on a token clipped at 1-epsilon with a negative "
                  "advantage (paper 1.0; the Klear team later advised 0.25-0.5)."},
    )
    gppo_beta2: float = field(
        default=1.0,
        metadata={"help": "loss_type gppo: scale of the gradient kept on a token clipped at 1+epsilon_high with a "
                  "positive advantage (paper 1.0)."},
    )
    dual_clip: float | None = field(
        default=None,
        metadata={"help": "loss_type gppo: the dual clip c (> 1): a negative-advantage token's loss stops growing at "
                  "c·|A| once the ratio exceeds c (the Klear recipe: 10). Unset: no dual clip."},
    )
    nll_alpha: float = field(
        default=0.0,
        metadata={"help": "loss_type gppo: weight α of the NLL (token mean) of the correct rollouts added to the loss "
                  "(the Klear recipe: 0.1)."},
    )
    correct_reward_threshold: float = field(
        default=1.0,
        metadata={"help": "A rollout is correct when its weighted total reward is at least this (rewards/accuracy, "
                  "and the rollouts nll_alpha trains on)."},
    )
    drop_zero_variance_groups: bool = field(
        default=True,
        metadata={"help": "Take the groups whose rollouts all earned the same reward out of the loss (DAPO's "
                  "filter; they carry no advantage): masked from the loss, its token count and the NLL term, and "
                  "counted per step (rewards/zero_variance_groups)."},
    )
    vllm_enforce_eager: bool = field(
        default=False,
        metadata={"help": "vllm_mode colocate: build each rank's engine eager (vLLM's enforce_eager: no torch.compile "
                  "of the decoder, no CUDA graphs), as `trl vllm-serve --enforce_eager` does for a server. The engine "
                  "starts without compiling (on vLLM's CPU build that compile takes longer than a tiny run); on GPUs "
                  "generation without CUDA graphs is slower."},
    )
    record_rollouts: bool = field(
        default=True,
        metadata={"help": "Write every training rollout (prompt, completion, each reward, what the rewards logged) "
                  "to output_dir/rollouts/step_XXXXXX.jsonl."},
    )
    # MoE defaults for RL (the TRL field, re-declared for its default).
    router_aux_loss_coef: float | None = field(
        default=0.0,
        metadata={"help": "Weight of the router's load-balancing auxiliary loss. 0.0 (RL's default) turns it off; "
                  "unset takes the model config's."},
    )

    def __post_init__(self):
        super().__post_init__()
        if not self.reward_funcs:
            raise ValueError("reward_funcs is empty: name at least one reward (math, code, think_format or a dotted "
                             "path)")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}; got {self.loss_type!r}")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} values for {len(self.reward_funcs)} "
                             "reward_funcs")
        check_generation_backend(self)
        if self.loss_type == "gppo":
            check_gppo_options(self)
        else:
            for name, unused in (("gppo_beta1", self.gppo_beta1 != 1.0), ("gppo_beta2", self.gppo_beta2 != 1.0),
                                 ("dual_clip", self.dual_clip is not None), ("nll_alpha", self.nll_alpha != 0.0)):
                if unused:
                    raise ValueError(f"{name} is set but loss_type is {self.loss_type!r}: it applies to "
                                     "loss_type gppo only")


def check_generation_backend(args) -> None:
    if args.vllm_enforce_eager and not colocate_mode(args):
        raise ValueError("vllm_enforce_eager applies to use_vllm with vllm_mode colocate only (a server takes "
                         f"--enforce-eager itself); got use_vllm {args.use_vllm}, vllm_mode {args.vllm_mode!r}")


def check_gppo_options(args) -> None:
    """GPPO's own values, and the TRL options whose handling lives inside TRL's other losses (refused rather
    than silently ignored)."""
    if args.gppo_beta1 < 0 or args.gppo_beta2 < 0:
        raise ValueError(f"gppo_beta1 and gppo_beta2 must not be negative; got {args.gppo_beta1}, {args.gppo_beta2}")
    if args.dual_clip is not None and args.dual_clip <= 1:
        raise ValueError(f"dual_clip must be greater than 1; got {args.dual_clip}")
    if args.nll_alpha < 0:
        raise ValueError(f"nll_alpha must not be negative; got {args.nll_alpha}")
    refused = {
        "importance_sampling_level": (args.importance_sampling_level != "token", "'token'"),
        "delta": (args.delta is not None, "unset (gppo's dual clip is dual_clip)"),
        "off_policy_mask_threshold": (args.off_policy_mask_threshold is not None, "unset"),
        "top_entropy_quantile": (args.top_entropy_quantile < 1.0, "1.0"),
        "entropy_coef": (bool(args.entropy_coef), "0"),
        "use_adaptive_entropy": (args.use_adaptive_entropy, "false"),
    }
    for name, (bad, allowed) in refused.items():
        if bad:
            raise ValueError(f"loss_type gppo supports {name} {allowed} only; got {getattr(args, name)!r}")
