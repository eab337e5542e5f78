"""The SFT stage's recipe and data: TRL's SFTConfig with Klear's shared fields (align.training.config),
and the `StageDataSpec` that tells the shared builder how SFT rows are read and tokenised."""

from dataclasses import dataclass

from trl import SFTConfig

from align.data.chat import read_chat_rows, tokenize_chat_rows
from align.data.sources import DataReport
from align.data.stage_data import StageDataSpec
from align.training.config import KlearArguments


@dataclass
class KlearSFTConfig(KlearArguments, SFTConfig):
    pass


def tokenize_sft_rows(rows, tokenizer, args: KlearSFTConfig, report: DataReport):
    """`input_ids` + `assistant_masks`, cut at `max_length` (cuts counted)."""
    return tokenize_chat_rows(rows, tokenizer, args.max_length, report, num_proc=args.dataset_num_proc)


# conversations `messages` in; token ids and assistant-only masks out
SFT_DATA = StageDataSpec("sft", read=read_chat_rows, prepare=tokenize_sft_rows)
