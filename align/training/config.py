"""Recipe fields that TRL's configs lack, shared by the SFT and DPO stages.

Each stage's config is TRL's own (`SFTConfig`, `DPOConfig`) with these fields mixed in, so one flat
YAML holds everything and TRL's parser rejects unknown keys.
"""

import json
from dataclasses import dataclass, field

from trl import DPOConfig, SFTConfig

from align.data.sources import DataError, Source


@dataclass
class KlearArguments:
    dataset_mixture: list | str | None = field(
        default=None,
        metadata={
            "help": "Several datasets mixed by weight: a YAML list of {path, weight, split} (weight 0.5 takes a "
            "seeded half, 2 takes every row twice), or the same as JSON on the command line. Overrides dataset_name."
        },
    )
    freeze_router: bool = field(default=False, metadata={"help": "Keep every router (gate) weight fixed."})
    expert_bias_update: str = field(
        default="frozen",
        metadata={
            "help": "'frozen' keeps each layer's expert_bias as loaded; 'aux_free' nudges it after every step "
            "against the expert's load (DeepSeek-V3's auxiliary-loss-free balancing)."
        },
    )
    expert_bias_update_rate: float = field(
        default=1e-3, metadata={"help": "Step size of the aux_free bias update (u in DeepSeek-V3)."}
    )
    judge: dict | str | None = field(
        default=None,
        metadata={
            "help": "If set, rank 0 judges the saved model when training ends (see align.judging); a mapping, "
            "or JSON on the command line."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.expert_bias_update not in ("frozen", "aux_free"):
            raise ValueError(f"expert_bias_update must be 'frozen' or 'aux_free', got {self.expert_bias_update!r}")
        if isinstance(self.judge, str):
            self.judge = json.loads(self.judge)

    def mixture_sources(self, dataset_name: str | None) -> list[Source]:
        """The datasets to train on: the mixture if given, else `dataset_name` alone."""
        mixture = self.dataset_mixture
        if isinstance(mixture, str):
            mixture = json.loads(mixture)
        if mixture:
            return [Source.parse(entry) for entry in mixture]
        if not dataset_name:
            raise DataError("no training data: set dataset_name or dataset_mixture")
        return [Source(dataset_name)]

    @property
    def bias_update_rate(self) -> float | None:
        return self.expert_bias_update_rate if self.expert_bias_update == "aux_free" else None


@dataclass
class KlearSFTConfig(KlearArguments, SFTConfig):
    pass


@dataclass
class KlearDPOConfig(KlearArguments, DPOConfig):
    """TRL's DPOConfig plus Klear's fields. The reference model is chosen with TRL's own switches:
    a frozen copy sharded like the policy (default), `precompute_ref_log_probs: true` (log-probs
    computed once before training, no copy kept), or `use_peft: true` (the base with adapters off)."""

    padding_free: bool = field(
        default=True,
        metadata={
            "help": "Pack each batch's pairs without padding and score only completion tokens (align's padding-free "
            "DPO; TRL's own is disabled). Log-probs equal the padded computation."
        },
    )
    share_prompt: bool = field(
        default=True,
        metadata={"help": "With padding_free, compute each pair's prompt once for its chosen and rejected answers."},
    )
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "Drop (and count) pairs whose prompt has more tokens than this."}
    )
