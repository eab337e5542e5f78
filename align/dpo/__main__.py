"""Direct Preference Optimization of a Klear MoE (TRL's DPOTrainer underneath).

    accelerate launch --config_file configs/accelerate/cpu-2proc.yaml -m align.dpo --config configs/dpo/tiny.yaml
    python -m align.dpo --config configs/dpo/tiny.yaml            # one process, no DeepSpeed

Starts from an SFT checkpoint (or any Klear checkpoint). Data: TRL's preference formats, or the
dataset `python -m annotation pull` writes. The final policy lands in `output_dir` in the
official Klear layout, with `training_summary.json`, `data_card.json`, and the judge's report in
`output_dir/judge/` when the recipe has a `judge:` section. Bad input ends the run with one line
per rank; `--debug` (or KLEAR_DEBUG=1) shows the traceback.
"""

import time

from transformers import set_seed
from trl import ModelConfig, ScriptArguments, get_peft_config

import align  # noqa: F401  (registers Klear)
from align.dpo.config import DPO_DATA, KlearDPOConfig
from align.dpo.trainer import KlearDPOTrainer
from align.training.cli import run_stage
from align.training.run import (
    check_output_dir,
    finalize_data,
    load_model,
    load_tokenizer,
    prepare_data,
    prepare_model_for_training,
    save_and_judge,
)


def main(script_args: ScriptArguments, training_args: KlearDPOConfig, model_args: ModelConfig) -> KlearDPOTrainer:
    started = time.time()
    set_seed(training_args.seed)

    check_output_dir(training_args)
    tokenizer = load_tokenizer(model_args)
    data = prepare_data(DPO_DATA, script_args, training_args, tokenizer)  # main process reads; nothing written yet
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
    save_and_judge(trainer, training_args, started, data.report, stage="dpo")
    return trainer


if __name__ == "__main__":
    run_stage("align.dpo", main, KlearDPOConfig)
