"""The DPO stage's recipe and data: TRL's DPOConfig with Klear's shared fields (align.training.config)
and DPO's own (pair packing, prompt limit), and the `StageDataSpec` that tells the shared builder how
preference pairs are read and measured."""

from dataclasses import dataclass, field

from trl import DPOConfig

from align.data.preference import measure_preference_rows, read_preference_rows
from align.data.sources import DataReport
from align.data.stage_data import StageDataSpec
from align.training.config import KlearArguments


@dataclass
class KlearDPOConfig(KlearArguments, DPOConfig):
    """TRL's DPOConfig plus Klear's fields. The reference model is chosen with TRL's own switches:
    a frozen copy sharded like the policy (default), `precompute_ref_log_probs: true` (log-probs
    computed once before training, no copy kept), or `use_peft: true` (the base with adapters off)."""

    packed_pairs: bool = field(
        default=True,
        metadata={
            "help": "Pack each batch's pairs without padding and score only completion tokens (align.dpo.packing). "
            "Log-probs equal the padded computation. (TRL's own `padding_free` stays off: TRL 1.16 disables it.)"
        },
    )
    share_prompt: bool = field(
        default=True,
        metadata={"help": "With packed_pairs, compute each pair's prompt once for its chosen and rejected answers."},
    )
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "Drop (and count) pairs whose prompt has more tokens than this."}
    )


def measure_dpo_rows(rows, tokenizer, args: KlearDPOConfig, report: DataReport):
    """Conversational `prompt`/`chosen`/`rejected`; pairs over the length limits dropped or counted."""
    return measure_preference_rows(rows, tokenizer, args.max_length, args.max_prompt_length, report,
                                   num_proc=args.dataset_num_proc)


# preference pairs in; the same pairs, measured against max_length / max_prompt_length, out
DPO_DATA = StageDataSpec("dpo", read=read_preference_rows, prepare=measure_dpo_rows)
