"""What both stages add to TRL's trainers: MoE metrics and bias updates, and a gathering final save."""

import torch

from .autoep import check_expert_parallel_config, expert_parallel_section, gather_full_state_dict
from .compat import autoep_layers
from .moe import ExpertLoadCallback


class KlearTrainerMixin:
    """Put in front of a TRL trainer (`class T(KlearTrainerMixin, SFTTrainer)`).

    - refuses DeepSpeed expert-parallel settings that would change Klear's routing;
    - tracks expert loads every optimiser step (and updates the expert bias when the recipe says
      `expert_bias_update: aux_free`), adding `moe/*` metrics to the training logs;
    - `save_final_model` writes the official Klear layout even from ZeRO-3 + expert-parallel shards.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        plugin = self.accelerator.state.deepspeed_plugin
        deepspeed_config = plugin.deepspeed_config if plugin else None
        check_expert_parallel_config(deepspeed_config, self.model.config)
        if expert_parallel_section(deepspeed_config) and hasattr(self.model, "peft_config") and (
            self.args.save_strategy != "no"
        ):
            raise ValueError(
                "LoRA with expert parallelism cannot write mid-training checkpoints: DeepSpeed 0.19.8's AutoEP refuses "
                "to checkpoint frozen expert weights. Set save_strategy: 'no' (the final adapter is still saved), or "
                "train LoRA without expert_parallel in the DeepSpeed config."
            )
        self.expert_load = ExpertLoadCallback(self.args.bias_update_rate)
        self.add_callback(self.expert_load)

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs:  # training logs, not eval or the end-of-training summary
            logs.update(self.expert_load.pop_metrics())
        super().log(logs, start_time)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if _internal_call and self.is_deepspeed_enabled and autoep_layers(self.model):
            # A mid-training checkpoint: DeepSpeed cannot consolidate AutoEP's experts into one state
            # dict, and resuming reads the DeepSpeed state the Trainer saves next to it anyway.
            return
        super().save_model(output_dir, _internal_call)

    def save_final_model(self, output_dir: str) -> None:
        """Write the trained model (official Klear layout, safetensors shards of at most
        `max_shard_size` with `model.safetensors.index.json` when there are several; LoRA: the
        adapter) and its tokenizer. Every rank calls it."""
        is_peft = hasattr(self.accelerator.unwrap_model(self.model), "peft_config")
        if not self.is_deepspeed_enabled:
            if is_peft:
                self.save_model(output_dir)
            elif self.accelerator.is_main_process:
                self.accelerator.unwrap_model(self.model).save_pretrained(output_dir, max_shard_size=self.args.max_shard_size)
                self.processing_class.save_pretrained(output_dir)
            self.accelerator.wait_for_everyone()
            return
        state = gather_full_state_dict(self.model)  # collective: every rank takes part
        if self.accelerator.is_main_process:
            if is_peft:
                self.model.save_pretrained(output_dir, state_dict=state)  # PEFT keeps the adapter's weights
            else:
                with torch.device("meta"):  # no second full-size allocation on rank 0
                    plain = type(self.model)(self.model.config)
                # assign=True keeps each tensor's dtype: the expert bias stays float32 in a bf16 model
                plain.load_state_dict(state, strict=True, assign=True)
                plain.save_pretrained(output_dir, max_shard_size=self.args.max_shard_size)
            self.processing_class.save_pretrained(output_dir)
        self.accelerator.wait_for_everyone()
