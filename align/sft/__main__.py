"""Supervised fine-tuning of a Klear MoE on chat data (TRL's SFTTrainer underneath).

    accelerate launch --config_file configs/accelerate/cpu-2proc.yaml -m align.sft --config configs/sft/tiny.yaml
    python -m align.sft --config configs/sft/tiny.yaml            # one process, no DeepSpeed

Any recipe field can be overridden on the command line (`--max_steps 5`, `--output_dir ...`).
Bad input ends the run with one line per rank; `--debug` (or KLEAR_DEBUG=1) shows the traceback.
The final model lands in `output_dir` in the official Klear layout, with its tokenizer,
`training_summary.json` and `data_card.json`.
"""

import time

from transformers import set_seed
from trl import ModelConfig, ScriptArguments, get_peft_config

import align  # noqa: F401  (registers Klear)
from align.sft.config import SFT_DATA, KlearSFTConfig
from align.sft.trainer import KlearSFTTrainer
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


def main(script_args: ScriptArguments, training_args: KlearSFTConfig, model_args: ModelConfig) -> KlearSFTTrainer:
    started = time.time()
    set_seed(training_args.seed)

    check_output_dir(training_args)
    tokenizer = load_tokenizer(model_args)
    data = prepare_data(SFT_DATA, script_args, training_args, tokenizer)  # main process reads; nothing written yet
    model = prepare_model_for_training(load_model(model_args), training_args)
    data = finalize_data(training_args, data)  # data card, train_data, eval_data; every rank loads them
    if not training_args.packing:
        # Rows are truncated (and counted) above; TRL must not cut them again, and refuses
        # `padding_free` with a `max_length` it would not enforce. Packing needs it as the bin size.
        training_args.max_length = None

    trainer = KlearSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    save_and_judge(trainer, training_args, started, data.report, stage="sft")
    return trainer


if __name__ == "__main__":
    run_stage("align.sft", main, KlearSFTConfig)
