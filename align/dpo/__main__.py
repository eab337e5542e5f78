"""Direct Preference Optimization of a Klear MoE (TRL's DPOTrainer underneath).

    accelerate launch --config_file configs/accelerate/cpu-2proc.yaml -m align.dpo --config configs/dpo/tiny.yaml
    python -m align.dpo --config configs/dpo/tiny.yaml            # one process, no DeepSpeed

Starts from an SFT checkpoint (or any Klear checkpoint). Data: TRL's preference formats, or the
dataset `python -m annotation pull` writes. The final policy lands in `output_dir` in the
official Klear layout, with `training_summary.json`, `data_card.json`, and the judge's report in
`output_dir/judge/` when the recipe has a `judge:` section.
"""

import time

from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
from trl import DPOTrainer, ModelConfig, ScriptArguments, TrlParser, get_peft_config

import align  # noqa: F401  (registers Klear)
from align.data.preference import build_preference_dataset
from align.data.sources import DataReport
from align.dpo.packing import use_packed_pairs
from align.training.config import KlearDPOConfig
from align.training.run import after_training, prepare_model_for_training, report_data
from align.training.trainer import KlearTrainerMixin


class KlearDPOTrainer(KlearTrainerMixin, DPOTrainer):
    """TRL's DPOTrainer with padding-free packed pairs, Klear's MoE metrics, bias update and gathering save."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.padding_free:
            for model in (self.model, self.ref_model):
                if model is None:
                    continue
                target = getattr(model, "module", model)  # a DeepSpeed engine wraps the reference model
                target = target.get_base_model() if hasattr(target, "get_base_model") else target
                use_packed_pairs(target, share_prompt=self.args.share_prompt)


def main(script_args: ScriptArguments, training_args: KlearDPOConfig, model_args: ModelConfig) -> KlearDPOTrainer:
    started = time.time()
    set_seed(training_args.seed)

    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    data_report = DataReport()
    train_dataset = build_preference_dataset(
        training_args.mixture_sources(script_args.dataset_name),
        tokenizer,
        training_args.max_length,
        training_args.max_prompt_length,
        data_report,
        seed=training_args.seed,
    )
    report_data(training_args, data_report)

    def load_model():
        return AutoModelForCausalLM.from_pretrained(
            model_args.model_name_or_path, dtype=model_args.dtype, attn_implementation=model_args.attn_implementation
        )

    model = prepare_model_for_training(load_model(), training_args)
    # The reference: a frozen copy (sharded like the policy under DeepSpeed), unless the log-probs are
    # precomputed or LoRA adapters can be switched off.
    needs_copy = not (training_args.precompute_ref_log_probs or model_args.use_peft)
    trainer = KlearDPOTrainer(
        model=model,
        ref_model=load_model() if needs_copy else None,
        args=training_args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    after_training(trainer, training_args, started, data_report, stage="dpo")
    return trainer


if __name__ == "__main__":
    parser = TrlParser((ScriptArguments, KlearDPOConfig, ModelConfig))
    main(*parser.parse_args_and_config())
