"""The SFT trainer: TRL's SFTTrainer with Klear's MoE metrics, bias update and gathering save, and
sequence parallelism (DeepSpeed Ulysses) when the launcher asks for it."""

from trl import SFTTrainer

from align.training.compat import REAL_TOKENS_KEY
from align.training.sequence_parallel import (
    check_sequence_parallel_setup,
    prepare_trainer_for_sequence_parallelism,
    sequence_parallel_size,
)
from align.training.trainer import KlearTrainerMixin


class KlearSFTTrainer(KlearTrainerMixin, SFTTrainer):
    """TRL's SFTTrainer with Klear's MoE metrics, bias update and gathering save; under sequence parallelism
    (`parallelism_config_sp_size` > 1 in the accelerate config) the unsupported combinations are refused here,
    before the first step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sequence_parallel_size = sequence_parallel_size(self.accelerator)
        plugin = self.accelerator.state.deepspeed_plugin
        handler = getattr(self.accelerator.parallelism_config, "sp_handler", None)
        check_sequence_parallel_setup(
            self.sequence_parallel_size,
            plugin.deepspeed_config if plugin else None,
            self.model.config,
            attn_implementation=self.model.config._attn_implementation,
            sp_attn_implementation=getattr(handler, "sp_attn_implementation", None),
        )
        prepare_trainer_for_sequence_parallelism(self, self.sequence_parallel_size)

    def training_step(self, model, inputs, num_items_in_batch=None):
        # Under sequence parallelism each micro-batch says which of its tokens are padding (added to make the
        # row divisible by the group size): the expert-load counter must not count them.
        real_tokens = inputs.pop(REAL_TOKENS_KEY, None)
        self.expert_load.set_real_tokens(real_tokens)
        try:
            return super().training_step(model, inputs, num_items_in_batch)
        finally:
            self.expert_load.set_real_tokens(None)
