"""The recipe of on-policy DPO rounds: the DPO recipe's fields (each round runs `align.dpo`'s training with
them) plus the rounds' own: which prompts, how many samples, how they are scored and paired.

One flat YAML, parsed by TRL's parser like every stage's (unknown keys are refused). The sections that
are mappings are parsed once, here, into typed objects: `scorer_judge` into the judge client's
`JudgeConfig` (align.judging.config), the annotator settings into `AnnotatorSettings`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from align.dpo.config import KlearDPOConfig

SCORERS = ("reward", "judge", "annotators")
SAMPLING_ENGINES = ("auto", "transformers", "vllm")


@dataclass(frozen=True)
class AnnotatorSettings:
    """Where a round's pairs go for annotation (the `annotators` scorer) and when the round goes on."""

    dataset_prefix: str = "iterate"  # round N's Argilla dataset is <prefix>-round-<N>
    workspace: str = "argilla"
    min_submitted: int = 1  # responses a pair needs before it counts (Argilla's task distribution)
    data_dir: str | None = None  # the `annotation serve` data directory (its credentials); None: $ARGILLA_API_URL/KEY
    gold_pairs: str | None = None  # gold (quality-control) pairs pushed with each round's, as `annotation push` reads them
    wait_s: float = 0.0  # how long the run waits for min_submitted; 0: push, then stop and say how to resume
    poll_s: float = 30.0
    min_agreement: float = 0.5  # the consensus rule of `annotation pull` (annotation.resolve.Policy)

    @classmethod
    def from_mapping(cls, values: dict | str | None) -> AnnotatorSettings:
        values = json.loads(values) if isinstance(values, str) else dict(values or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"annotators: unknown key(s) {unknown}; known: {sorted(known)}")
        settings = cls(**values)
        if settings.min_submitted < 1:
            raise ValueError(f"annotators: min_submitted must be at least 1; got {settings.min_submitted}")
        return settings


@dataclass
class KlearIterateConfig(KlearDPOConfig):
    """`KlearDPOConfig` plus the rounds. `output_dir` holds `round-N/` per round and `rounds.json`;
    `model_name_or_path` is round 1's policy (and reference); round N starts from round N-1's policy."""

    rounds: int = field(default=2, metadata={"help": "How many rounds to run; a larger value extends a finished run."})
    prompts_dataset: str | None = field(
        default=None,
        metadata={"help": "Prompt-only rows, {'prompt': text or [messages]} plus the columns the reward functions "
                  "read (a file, a save_to_disk directory or a hub id)."},
    )
    prompts_per_round: int = field(
        default=64, metadata={"help": "Fresh prompts each round (a seeded shuffle of the set, cut in slices), until "
                              "the set is used up."}
    )
    samples_per_prompt: int = field(default=4, metadata={"help": "Answers sampled from the policy per prompt."})
    sampling_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (below 1e-4: greedy)."})
    sampling_max_new_tokens: int = field(default=256, metadata={"help": "Longest sampled answer, in tokens."})
    sampling_engine: str = field(
        default="auto",
        metadata={"help": "'auto' (vLLM where installed and able to run the model, else transformers; "
                  "$ALIGN_ANSWER_ENGINE overrides), 'transformers' or 'vllm'."},
    )
    sampling_batch_size: int = field(default=16, metadata={"help": "Prompts per batch (transformers engine)."})
    scorer: str = field(default="reward", metadata={"help": "'reward', 'judge' or 'annotators'."})
    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={"help": "With scorer 'reward': built-in names (math, code, think_format) or dotted paths of "
                  "functions with TRL's signature f(prompts=, completions=, **columns) -> list[float]; summed."},
    )
    reward_weights: list[float] | None = field(
        default=None, metadata={"help": "One weight per reward function (default: all 1)."}
    )
    pair_margin: float = field(
        default=0.0,
        metadata={"help": "With scorer 'reward': a prompt's best and worst sample make a pair only when their rewards "
                  "differ by more than this (equal rewards are a tie, always skipped)."},
    )
    scorer_judge: dict | str | None = field(
        default=None,
        metadata={"help": "With scorer 'judge': the judge endpoint (align.judging's keys: base_url, model, "
                  "concurrency, repeats, ...; the rest from JUDGE_* in the environment)."},
    )
    annotators: dict | str | None = field(
        default=None, metadata={"help": "With scorer 'annotators': align.iterate.config.AnnotatorSettings' keys."}
    )

    def __post_init__(self):
        super().__post_init__()
        for name in ("rounds", "prompts_per_round", "samples_per_prompt", "sampling_max_new_tokens",
                     "sampling_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.samples_per_prompt < 2:
            raise ValueError(f"samples_per_prompt must be at least 2 (a pair needs two answers); "
                             f"got {self.samples_per_prompt}")
        if not self.prompts_dataset:
            raise ValueError("prompts_dataset is not set (prompt-only rows: {'prompt': ...})")
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {', '.join(SCORERS)}; got {self.scorer!r}")
        if self.sampling_engine not in SAMPLING_ENGINES:
            raise ValueError(f"sampling_engine must be one of {', '.join(SAMPLING_ENGINES)}; got {self.sampling_engine!r}")
        if self.pair_margin < 0:
            raise ValueError(f"pair_margin must not be negative; got {self.pair_margin}")
        if self.scorer == "reward" and not self.reward_funcs:
            raise ValueError("scorer is 'reward' but reward_funcs is empty")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} value(s) for "
                             f"{len(self.reward_funcs)} reward function(s)")
        if isinstance(self.scorer_judge, str):
            self.scorer_judge = json.loads(self.scorer_judge)
        self.annotator_settings = AnnotatorSettings.from_mapping(self.annotators)

    def judge_config(self):
        """The scorer's judge client settings (explicit keys win over JUDGE_* in the environment)."""
        from align.judging.config import JudgeConfig

        return JudgeConfig.from_mapping(self.scorer_judge or {})
