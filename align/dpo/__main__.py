"""Direct Preference Optimization of a Klear MoE (TRL's DPOTrainer underneath).

    accelerate launch --config_file configs/accelerate/cpu-2proc.yaml -m align.dpo --config configs/dpo/tiny.yaml
    python -m align.dpo --config configs/dpo/tiny.yaml            # one process, no DeepSpeed

Starts from an SFT checkpoint (or any Klear checkpoint). Data: TRL's preference formats, or the
dataset `python -m annotation pull` writes. The final policy lands in `output_dir` in the
official Klear layout, with `training_summary.json`, `data_card.json`, and the judge's report in
`output_dir/judge/` when the recipe has a `judge:` section.
"""

import time

from transformers import set_seed
from trl import DPOTrainer, ModelConfig, ScriptArguments, TrlParser, get_peft_config
from trl.models.utils import prepare_deepspeed
from trl.trainer.utils import add_fused_lm_head

import align  # noqa: F401  (registers Klear)
from align.dpo.packing import use_packed_pairs
from align.training.autoep import expert_parallel_section
from align.training.config import KlearDPOConfig
from align.training.run import (
    after_training,
    check_output_dir,
    finalize_data,
    load_model,
    load_tokenizer,
    prepare_data,
    prepare_model_for_training,
)
from align.training.trainer import KlearTrainerMixin


class KlearDPOTrainer(KlearTrainerMixin, DPOTrainer):
    """TRL's DPOTrainer with padding-free packed pairs, Klear's MoE metrics, bias update and gathering save.

    `load_reference` loads a fresh copy of the starting model; it is needed to precompute reference
    log-probs under expert parallelism (see `_precompute_ref_logps`).
    """

    def __init__(self, *args, load_reference=None, **kwargs):
        self._load_reference = load_reference
        super().__init__(*args, **kwargs)
        if self.args.padding_free:
            for model in (self.model, self.ref_model):
                if model is not None:
                    use_packed_pairs(_causal_lm(model), share_prompt=self.args.share_prompt)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        plugin = self.accelerator.state.deepspeed_plugin
        if self.ref_model is not None or not expert_parallel_section(plugin.deepspeed_config if plugin else None):
            return super()._precompute_ref_logps(dataset, name, batch_size)
        # TRL would wrap the policy itself in a DeepSpeed engine for this pass; AutoEP replaces MoE blocks
        # in place, which would leave nothing for the training engine to replace. Score with a copy.
        reference = self._load_reference()
        add_fused_lm_head(reference)
        self.ref_model = prepare_deepspeed(reference, self.accelerator)
        try:
            return super()._precompute_ref_logps(dataset, name, batch_size)
        finally:
            self.ref_model = None


def _causal_lm(model):
    """The module TRL patched with its fused LM head, under a DeepSpeed engine or a PEFT wrapper."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def main(script_args: ScriptArguments, training_args: KlearDPOConfig, model_args: ModelConfig) -> KlearDPOTrainer:
    started = time.time()
    set_seed(training_args.seed)

    check_output_dir(training_args)
    tokenizer = load_tokenizer(model_args)
    data = prepare_data("dpo", script_args, training_args, tokenizer)  # main process reads; nothing written yet
    model = prepare_model_for_training(load_model(model_args), training_args)
    data = finalize_data(training_args, data)  # data card, train_data, eval_data; every rank loads them

    # The reference: a frozen copy (sharded like the policy under DeepSpeed), unless the log-probs are
    # precomputed or LoRA adapters can be switched off.
    needs_copy = not (training_args.precompute_ref_log_probs or model_args.use_peft)
    trainer = KlearDPOTrainer(
        model=model,
        ref_model=load_model(model_args) if needs_copy else None,
        load_reference=lambda: load_model(model_args),
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    after_training(trainer, training_args, started, data.report, stage="dpo")
    return trainer


if __name__ == "__main__":
    parser = TrlParser((ScriptArguments, KlearDPOConfig, ModelConfig))
    main(*parser.parse_args_and_config())
