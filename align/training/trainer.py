"""What the stages add to TRL's trainers: MoE metrics and bias updates, run counts that survive a resume,
and a gathering final save."""

import json
from pathlib import Path

import torch
from transformers import TrainerCallback

from .autoep import check_expert_parallel_config, expert_parallel_section, gather_full_state_dict
from .compat import ResumeThroughWeightConversion, autoep_layers, restore_trained_token_count, trained_token_count
from .moe import ExpertLoadCallback

RUN_COUNTS = "KlearRunCounts"  # their key in a checkpoint's trainer_state.json (`stateful_callbacks`)


class RunCountsInState(TrainerCallback):
    """Keeps the run's counts (`KlearTrainerMixin.run_counts`) in the trainer state at every step end, so each
    checkpoint's trainer_state.json holds them as of its step. The Trainer saves its state's
    `stateful_callbacks` dict as it is; the counts TRL and our callbacks keep live only in memory otherwise."""

    def __init__(self, read_counts):
        self.read_counts = read_counts

    def on_step_end(self, args, state, control, **kwargs):
        state.stateful_callbacks[RUN_COUNTS] = self.read_counts()


class KlearTrainerMixin(ResumeThroughWeightConversion):
    """Put in front of a TRL trainer (`class T(KlearTrainerMixin, SFTTrainer)`).

    - refuses DeepSpeed expert-parallel settings that would change Klear's routing;
    - tracks expert loads every optimiser step (and updates the expert bias when the recipe says
      `expert_bias_update: aux_free`), adding `moe/*` metrics to the training logs;
    - `save_final_model` writes the official Klear layout even from ZeRO-3 + expert-parallel shards;
    - a resume continues the run's counts (`run_counts`) and, without DeepSpeed, a resume and
      `load_best_model_at_end` load every weight of the checkpoint (`ResumeThroughWeightConversion`).
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
        self.add_callback(RunCountsInState(self.run_counts))  # after expert_load: it reads that step's loads
        self.expert_load_before_resume: torch.Tensor | None = None
        self.resumed_from: dict | None = None  # {"step", "train_tokens", "counts_restored"} of a resumed run

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        # `true` was already resolved to a complete checkpoint's path (align.training.run.check_output_dir)
        if isinstance(resume_from_checkpoint, (str, Path)):
            self.resumed_from = self.restore_run_counts(resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def run_counts(self) -> dict:
        """The whole run's counts so far: tokens trained (TRL's `num_tokens`), expert loads, RL's rollout counts
        and record batches."""
        counts = {"train_tokens": trained_token_count(self)}
        total = self.expert_load_total()
        if total is not None:
            counts["expert_load_total"] = total.tolist()
        if hasattr(self, "rl_counts"):  # the RL trainer's; its rollout records are numbered by batch
            counts["rl_counts"] = dict(self.rl_counts)
            counts["rollout_batches"] = self._rollout_batches
        return counts

    def restore_run_counts(self, checkpoint: str) -> dict:
        """Continue the counts from `checkpoint` (its `RUN_COUNTS`); one written without them leaves this
        launch counting from zero, which the summary then says."""
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
        counts = state.get("stateful_callbacks", {}).get(RUN_COUNTS)
        resumed = {"step": state["global_step"], "train_tokens": 0, "counts_restored": counts is not None}
        if counts is None:
            if self.accelerator.is_main_process:
                print(f"{checkpoint} holds no run counts: train_tokens, expert loads and RL counts of the summary "
                      "count from this resume on", flush=True)
            return resumed
        resumed["train_tokens"] = counts["train_tokens"]
        restore_trained_token_count(self, counts["train_tokens"])
        if "expert_load_total" in counts:
            self.expert_load_before_resume = torch.tensor(counts["expert_load_total"], dtype=torch.int64)
        if "rl_counts" in counts and hasattr(self, "rl_counts"):
            self.rl_counts.update(counts["rl_counts"])
            self._rollout_batches = counts["rollout_batches"]  # else the records of the first launch are overwritten
        return resumed

    def expert_load_total(self) -> torch.Tensor | None:
        """Tokens routed to each expert (layers x experts, int64, on the CPU) over the whole run, resumes included."""
        parts = [t.cpu() for t in (self.expert_load_before_resume, self.expert_load.total) if t is not None]
        return sum(parts[1:], parts[0]) if parts else None

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
