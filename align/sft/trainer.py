"""The SFT trainer: TRL's SFTTrainer with Klear's MoE metrics, bias update and gathering save."""

from trl import SFTTrainer

from align.training.trainer import KlearTrainerMixin


class KlearSFTTrainer(KlearTrainerMixin, SFTTrainer):
    """TRL's SFTTrainer with Klear's MoE metrics, bias update and gathering save."""
