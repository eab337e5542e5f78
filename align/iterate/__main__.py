"""On-policy DPO rounds: sample the policy, score the samples, pair them, train DPO on the pairs; repeat.

    python -m align.iterate --config configs/iterate/tiny.yaml          # one process (CPU, the tiny Klear)
    accelerate launch --config_file configs/accelerate/multinode-8gpu.yaml -m align.iterate \
        --config configs/iterate/klear-46b-a2.5b.yaml                    # DPO on every rank

Round N samples `samples_per_prompt` answers to `prompts_per_round` fresh prompts from round N-1's
policy (round 1: `model_name_or_path`), scores them (`scorer`: reward, judge or annotators), pairs
them, and runs align.dpo's training on the pairs from that policy, with that policy as the
reference. Each round lands in `output_dir/round-N/`, the figures of all in `output_dir/rounds.json`
and `rounds.md`. The same command after a crash or Ctrl-C continues where it stopped; a larger
`rounds` extends a finished run. Bad input ends the run with one line; `--debug` shows the traceback.
"""

from pathlib import Path

from accelerate import PartialState
from transformers import set_seed
from trl import ModelConfig, ScriptArguments

import align  # noqa: F401  (registers Klear)
from align.common.files import write_json, write_jsonl
from align.iterate.config import KlearIterateConfig
from align.iterate.prompts import PromptSet, load_prompt_set
from align.iterate.rounds import read_jsonl, run_rounds
from align.training.cli import run_stage
from align.training.run import on_main_process


def shared_prompt_set(args) -> PromptSet:
    """Read and clean the prompts on the main process (a bad row: one line on every rank); every rank then
    reads the same shuffled set."""
    output_dir = Path(args.output_dir)

    def load():
        prompt_set = load_prompt_set(args)
        print(f"prompts:\n{prompt_set.report.summary()}", flush=True)
        write_json(output_dir / "prompts_card.json", prompt_set.report.as_dict())
        write_jsonl(output_dir / "prompts.jsonl", prompt_set.rows)
        return prompt_set

    loaded = on_main_process(load)
    return loaded if loaded is not None else PromptSet(read_jsonl(output_dir / "prompts.jsonl"), report=None)


def main(script_args: ScriptArguments, args: KlearIterateConfig, model_args: ModelConfig) -> list[dict]:
    if model_args.use_peft:
        raise ValueError("use_peft: on-policy rounds train the full model (round N+1 samples round N's policy, "
                         "which a LoRA adapter is not on its own)")
    set_seed(args.seed)
    main_process = PartialState().is_main_process
    if args.judge_section is not None:  # what the section will do, said before the first round
        from align.judging.saved_model import check_judge_config

        # On every rank, not only the main one: without a model config it reads no file and builds no model (the
        # section was parsed with the recipe; the endpoint is the launch's environment, which every rank has),
        # and a bad endpoint (JUDGE_BASE_URL without JUDGE_MODEL) then stops every rank with the same line.
        checked = check_judge_config(args.judge_section)
        if main_process:
            print(f"judge: {checked}", flush=True)
    if args.scorer == "judge" and main_process:
        print(f"scorer: judge {args.judge_config().model} at {args.judge_config().base_url}", flush=True)
    summaries = run_rounds(shared_prompt_set(args), script_args, args, model_args)
    if main_process and summaries:
        last = summaries[-1]
        print(f"align.iterate: {len(summaries)} round(s) in {args.output_dir} (rounds.json, rounds.md); "
              f"the policy of round {last['round']}: {last['trained_policy']}", flush=True)
    return summaries


if __name__ == "__main__":
    run_stage("align.iterate", main, KlearIterateConfig)
