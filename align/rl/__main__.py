"""Reinforcement learning of a Klear MoE (or any causal LM TRL trains) with GPPO or any of TRL's GRPO losses.

    accelerate launch --config_file configs/accelerate/cpu-2proc.yaml -m align.rl --config configs/rl/tiny.yaml
    python -m align.rl --config configs/rl/tiny.yaml            # one process, no DeepSpeed

TRL's GRPOTrainer underneath (`align.rl.trainer`): rollouts from transformers (or vLLM, `use_vllm`: colocated, or
a server, `align.rl.vllm_server`), rewards named in the recipe (`reward_funcs`: built-in names or dotted paths),
`loss_type: gppo` or TRL's own losses.
Data: prompt-only rows plus the columns the rewards read (`align.rl.data`). The final policy lands in
`output_dir` in the official Klear layout, with `training_summary.json`, `data_card.json`, every rollout
in `output_dir/rollouts/`, and the judge's report in `output_dir/judge/` when the recipe has a `judge:`
section. Bad input ends the run with one line per rank; `--debug` (or KLEAR_DEBUG=1) shows the traceback.
"""

import time

from transformers import set_seed
from trl import ModelConfig, ScriptArguments, get_peft_config

import align  # noqa: F401  (registers Klear)
from align.rl.config import KlearGRPOConfig
from align.rl.data import RL_DATA
from align.rl.rewards import code_reward, resolve_reward_funcs
from align.rl.sandbox import check_sandbox
from align.rl.trainer import KlearGRPOTrainer
from align.rl.vllm_server import check_vllm_server, server_mode
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


def main(script_args: ScriptArguments, training_args: KlearGRPOConfig, model_args: ModelConfig) -> KlearGRPOTrainer:
    started = time.time()
    set_seed(training_args.seed)

    check_output_dir(training_args)
    reward_funcs = resolve_reward_funcs(training_args.reward_funcs)  # an unknown reward fails before anything loads
    if code_reward in reward_funcs:
        check_sandbox()  # a machine whose sandbox cannot start stops here in one line, not as hours of zeros
    if server_mode(training_args):
        check_vllm_server(training_args)  # a missing or misconfigured generator is named before the policy loads
    tokenizer = load_tokenizer(model_args)
    data = prepare_data(RL_DATA, script_args, training_args, tokenizer)  # main process reads; nothing written yet
    model = prepare_model_for_training(load_model(model_args), training_args)
    data = finalize_data(training_args, data)  # data card, train_data, eval_data; every rank loads them

    trainer = KlearGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    save_and_judge(trainer, training_args, started, data.report, stage="rl")
    return trainer


if __name__ == "__main__":
    run_stage("align.rl", main, KlearGRPOConfig)
