"""Recipe fields that TRL's configs lack, shared by every training stage.

Each stage's config lives beside its trainer (`align/sft/config.py`: `KlearSFTConfig(KlearArguments,
SFTConfig)`, `align/dpo/config.py`: `KlearDPOConfig`, ...): TRL's own config with these fields mixed in,
so one flat YAML holds everything and TRL's parser rejects unknown keys.

The recipe's sections are parsed once, in `__post_init__`, i.e. when the recipe is parsed and before any
data is read, into typed objects that every stage reads instead of the raw fields:

- `args.judge_section`: `align.judging.config.JudgeSection` (None when the recipe has no `judge:`);
- `args.data_hygiene`: `align.data.hygiene.DataHygiene` (decontamination and deduplication).
"""

import json
from dataclasses import dataclass, field

from align.data.hygiene import DataHygiene
from align.data.sources import DataError, Source
from align.judging.config import JudgeSection


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
    max_shard_size: str = field(
        default="5GB",
        metadata={
            "help": "Largest safetensors file of the final model; a bigger model is written as several shards with "
            "model.safetensors.index.json, the layout the released Klear checkpoints come in."
        },
    )
    judge: dict | str | None = field(
        default=None,
        metadata={
            "help": "If set, rank 0 judges the saved model when training ends (see align.judging); a mapping, "
            "or JSON on the command line."
        },
    )
    decontaminate: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Check the training rows against these evaluation sets (mt_bench, alignbench, or an eval .jsonl) "
            "for overlapping questions or reference answers (align.data.contamination); counts in data_card.json."
        },
    )
    decontaminate_action: str | None = field(
        default=None,
        metadata={"help": "'drop' or 'report' flagged rows; default 'drop' when the recipe has a judge section, "
                  "else 'report'."},
    )
    alignbench_dir: str | None = field(
        default=None,
        metadata={"help": "AlignBench's directory for decontaminate (default: the judge section's, $ALIGNBENCH_DIR, "
                  "or ../shared/data/alignbench)."},
    )
    dedup: str = field(
        default="none",
        metadata={"help": "Drop duplicate rows within the mixture, counted per source: 'none', 'exact' (same text "
                  "once case, whitespace and punctuation are ignored) or 'near' (exact, plus MinHash LSH)."},
    )
    dedup_threshold: float = field(
        default=0.8,
        metadata={"help": "With dedup 'near': the Jaccard similarity of 5-token shingles from which a later row is "
                  "a near duplicate of an earlier one."},
    )

    eval_dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Held-out rows in the training data's format (a file, a save_to_disk directory or a hub id), "
            "evaluated every eval_steps when eval_strategy is not 'no'. Unset: the dataset_test_split of "
            "dataset_name, as in TRL's scripts (a hub dataset or a saved DatasetDict)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Train into an output_dir that holds a finished run (training_summary.json), replacing it. "
            "Without it such a run is refused, unless resume_from_checkpoint is set."
        },
    )

    def __post_init__(self):
        check_number_types(self)
        check_values(self)
        super().__post_init__()
        if self.expert_bias_update not in ("frozen", "aux_free"):
            raise ValueError(f"expert_bias_update must be 'frozen' or 'aux_free', got {self.expert_bias_update!r}")
        if isinstance(self.judge, str):  # JSON from a command line; `null` (or `{}`) means no judge
            try:
                self.judge = json.loads(self.judge)
            except json.JSONDecodeError as err:
                raise ValueError(f"judge: not a JSON object ({err.msg}): {self.judge!r}") from None
        self.judge_section = JudgeSection.parse(self.judge) if self.judge else None
        judged_alignbench = self.judge_section.options.alignbench_dir if self.judge_section else None
        self.data_hygiene = DataHygiene(
            decontaminate=tuple(self.decontaminate),
            action=self.decontaminate_action or ("drop" if self.judge_section else "report"),
            alignbench_dir=self.alignbench_dir or judged_alignbench,
            dedup=self.dedup,
            threshold=self.dedup_threshold,
        )

    def mixture_sources(self, dataset_name: str | None) -> list[Source]:
        """The datasets to train on: the mixture if given, else `dataset_name` alone."""
        mixture = self.dataset_mixture
        if isinstance(mixture, str):
            mixture = json.loads(mixture)
        if mixture:
            if dataset_name:
                raise DataError(f"both dataset_name ({dataset_name!r}) and dataset_mixture are set: the mixture would "
                                "replace dataset_name without a word; keep one of the two")
            return [Source.parse(entry) for entry in mixture]
        if not dataset_name:
            raise DataError("no training data: set dataset_name or dataset_mixture")
        return [Source(dataset_name)]

    @property
    def bias_update_rate(self) -> float | None:
        return self.expert_bias_update_rate if self.expert_bias_update == "aux_free" else None


NUMBER_TYPES = {int: "a whole number", float: "a number", int | None: "a whole number", float | None: "a number"}


def check_number_types(args) -> None:
    """Refuse a list, a mapping, a boolean or a fraction where the recipe field takes a number (YAML hands
    them through as they are, and they failed later as tracebacks or trained with `true` as 1)."""
    from dataclasses import fields

    for option in fields(args):
        wanted = NUMBER_TYPES.get(option.type)
        value = getattr(args, option.name, None)
        if wanted is None or value is None:
            continue
        whole = option.type in (int, int | None)
        ok = not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and not whole))
        if not ok:
            raise ValueError(f"{option.name} must be {wanted}; got {value!r}")


def check_values(args) -> None:
    """Refuse values that transformers or TRL would silently reinterpret (a negative `max_steps` trains
    `num_train_epochs` instead) or that cannot work; the message names the field."""
    if args.max_steps == 0 or args.max_steps < -1:
        raise ValueError(f"max_steps must be a positive number of optimiser steps, or -1 (the default) to train "
                         f"num_train_epochs; got {args.max_steps}")
    if args.max_steps == -1 and not args.num_train_epochs > 0:
        raise ValueError(f"num_train_epochs must be positive when max_steps is not set; got {args.num_train_epochs}")
    positive = {"per_device_train_batch_size": args.per_device_train_batch_size,
                "gradient_accumulation_steps": args.gradient_accumulation_steps,
                "max_length": getattr(args, "max_length", None), "max_prompt_length": getattr(args, "max_prompt_length", None),
                "dataset_num_proc": getattr(args, "dataset_num_proc", None)}  # the RL config has neither length
    for name, value in positive.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1; got {value}")
    for name in ("learning_rate", "expert_bias_update_rate"):
        if getattr(args, name) < 0:
            raise ValueError(f"{name} must not be negative; got {getattr(args, name)}")
