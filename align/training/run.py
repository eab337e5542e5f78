"""The steps around `trainer.train()` that every stage takes: before (model options, data report)
and after (`save_and_judge`: final model, summary, judge)."""

import time
from pathlib import Path

from accelerate import PartialState

from align.common.files import write_json
from align.data.sources import DataReport, check_local_path, from_hub
from align.data.stage_data import StageData, StageDataSpec, build_stage_data

from .autoep import register_klear_preset
from .checkpoints import checkpoint_problem, checkpoints_in, last_complete_checkpoint, skipped_phrase
from .cli import USER_ERRORS, ReportedByMainProcess
from .config import KlearArguments
from .moe import freeze_routers, load_metrics


def check_output_dir(args) -> None:
    """Decide, before anything is read or written, where the run starts (`resume_point`): on the main
    process, so that every rank resumes from the same checkpoint (another rank could see a checkpoint still
    being written, or the main process's data step could change output_dir first); the others get its answer.
    Sets `args.resume_from_checkpoint` to the checkpoint path or None."""
    args.resume_from_checkpoint = on_main_process(lambda: resume_point(args), share_result=True)


def resume_point(args) -> str | None:
    """The checkpoint this run resumes from (None: it starts afresh), saying which in one line, or a
    `ValueError` naming the choices. Checkpoints are taken only when complete (`checkpoint_problem`).

    - `resume_from_checkpoint: PATH`: that checkpoint; `true`: the last complete one in output_dir (as in
      transformers);
    - output_dir holding an interrupted run (`checkpoint-N`, no `training_summary.json`), the flag not given:
      its last complete checkpoint, as alignment-handbook's scripts do (`get_last_checkpoint`);
    - `overwrite_output_dir: true`: afresh; the earlier run's checkpoints are removed once the data is read
      (`finalize_data`), or a later resume could pick up one of its checkpoints beyond this run's;
    - `resume_from_checkpoint: false` over an interrupted run: refused. transformers reads false as "do not
      resume" and never deletes, so starting in place would overwrite the earlier checkpoints one by one and
      leave its later ones for the next resume to take: the silent reuse of issue #18.7. Deleting a run's
      checkpoints without `overwrite_output_dir` would surprise more than a refusal naming both choices.
    """
    out = Path(args.output_dir)
    value = args.resume_from_checkpoint
    said = value.strip().lower() if isinstance(value, str) else value
    if said not in (None, True, False, "true", "yes", "1", "false", "no", "0", ""):  # a path
        problem = checkpoint_problem(value) if Path(value).exists() else "does not exist"
        if problem:
            raise ValueError(f"resume_from_checkpoint {value!r} cannot be resumed from: {problem}")
        print(f"resuming from {value}", flush=True)
        return value
    last, skipped = last_complete_checkpoint(out)
    skipped_note = f"; {skipped_phrase(skipped)}" if skipped else ""
    if said in (True, "true", "yes", "1"):
        if last is None:
            found = f" complete checkpoint ({skipped_phrase(skipped)})" if skipped else " checkpoint-N directory"
            raise ValueError(f"resume_from_checkpoint is true but output_dir {args.output_dir!r} holds no{found} "
                             "to resume from")
        print(f"resuming from the last complete checkpoint in output_dir: {last}{skipped_note}", flush=True)
        return str(last)
    finished = out / "training_summary.json"
    earlier = checkpoints_in(out)
    if args.overwrite_output_dir:
        if earlier or finished.exists():
            names = ", ".join(p.name for p in reversed(earlier)) or "no checkpoints"
            print(f"starting afresh (overwrite_output_dir: true): the earlier run in {args.output_dir} ({names}) "
                  "is replaced, its checkpoints removed once the data is read", flush=True)
        return None
    if finished.exists():
        raise ValueError(
            f"output_dir {args.output_dir!r} holds a finished run ({finished.name}); choose another output_dir, "
            "resume with --resume_from_checkpoint true (its last checkpoint) or a checkpoint path, or replace it with "
            "--overwrite_output_dir true"
        )
    if not earlier:
        return None
    interrupted = f"output_dir {args.output_dir!r} holds an interrupted run ({earlier[0].name}, no {finished.name})"
    if said is not None:  # an explicit false
        raise ValueError(f"{interrupted} and resume_from_checkpoint is false; resume it (leave resume_from_checkpoint "
                         "out, or true), or start afresh with --overwrite_output_dir true (removes its checkpoints), "
                         "or choose another output_dir")
    if last is None:
        raise ValueError(f"{interrupted} with no complete checkpoint ({skipped_phrase(skipped)}); start afresh with "
                         "--overwrite_output_dir true (removes its checkpoints), or choose another output_dir")
    print(f"{interrupted}: resuming from {last}, its last complete checkpoint{skipped_note} "
          "(to start afresh instead: --overwrite_output_dir true)", flush=True)
    return str(last)


def remove_replaced_run(args) -> None:
    """With `overwrite_output_dir: true` and no resume: the earlier run's checkpoints and summary go (the
    main process calls it once the data is good, so a bad row leaves the earlier run as it was)."""
    if not args.overwrite_output_dir or args.resume_from_checkpoint:
        return
    import shutil

    for checkpoint in checkpoints_in(args.output_dir):
        shutil.rmtree(checkpoint)
    (Path(args.output_dir) / "training_summary.json").unlink(missing_ok=True)


def check_model_dir(name: str) -> None:
    """A local model directory must hold config.json (transformers would blame a missing tokenizer library)."""
    path = Path(name).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"model_name_or_path {name!r} is a directory without config.json: not a saved model")


def load_tokenizer(model_args):
    """The starting checkpoint's tokenizer; a local-looking path that does not exist fails at once."""
    from transformers import AutoTokenizer

    name = model_args.model_name_or_path
    check_local_path(name, "model_name_or_path")
    check_model_dir(name)
    if Path(name).expanduser().exists():
        return AutoTokenizer.from_pretrained(name)
    return from_hub(lambda: AutoTokenizer.from_pretrained(name), name, "model_name_or_path")


def load_model(model_args):
    """The starting checkpoint, as the recipe's ModelConfig describes it (under ZeRO-3: partitioned)."""
    from transformers import AutoModelForCausalLM

    check_local_path(model_args.model_name_or_path, "model_name_or_path")
    return AutoModelForCausalLM.from_pretrained(
        model_args.model_name_or_path, dtype=model_args.dtype, attn_implementation=model_args.attn_implementation
    )


def prepare_model_for_training(model, args: KlearArguments):
    """Apply the recipe's MoE options to a freshly loaded model, before the trainer sees it."""
    register_klear_preset()  # must precede deepspeed.initialize on every rank
    if args.judge_section is not None:  # its keys were checked with the recipe; now: can the model be loaded to answer?
        from align.judging.saved_model import check_judge_config

        print(f"judge: {check_judge_config(args.judge_section, model_config=model.config)}", flush=True)
    if args.freeze_router:
        frozen = freeze_routers(model)
        if not frozen:
            raise ValueError("freeze_router is set but the model has no router weights (mlp.routed.gate.weight)")
    return model


def prepare_data(spec: StageDataSpec, script_args, args, tokenizer) -> StageData | None:
    """Build the stage's data (as its `spec` reads and prepares it) on the main process only (the other ranks wait, then load what it saves in
    `finalize_data`). Nothing is written yet: a bad row fails the run before output_dir is touched."""
    return on_main_process(lambda: build_stage_data(spec, args, script_args.dataset_name, tokenizer,
                                                    script_args.dataset_test_split))


def on_main_process(task, share_result: bool = False):
    """`task()` on the main process only (None elsewhere, or its result on every rank with `share_result`).
    Its user error (a bad row, a bad path) is sent to every rank and raised there too: the other ranks would
    otherwise wait at the next collective for a process that has exited, and die with gloo's "Connection
    closed by peer" traceback. Any other exception (a bug) is re-raised with its traceback on the main
    process, and the other ranks stop with one line that points at it."""
    from accelerate.utils import broadcast_object_list

    state = PartialState()
    result, error, reported = None, None, None
    if state.is_main_process:
        try:
            result = task()
        except USER_ERRORS as caught:
            error, reported = caught, str(caught)
        except Exception as caught:
            error = caught
            reported = f"the main process failed ({type(caught).__name__}: {caught}); its traceback is above"
    if state.num_processes > 1:
        message = [reported, result if share_result else None]
        broadcast_object_list(message)  # a collective: the other ranks wait here for the main process
        if not state.is_main_process and message[0] is not None:
            raise ReportedByMainProcess(message[0])
        result = message[1] if share_result else result
    if error is not None:
        raise error
    return result


def finalize_data(args, data: StageData | None) -> StageData:
    """Once the model has loaded: print the data counts, write `output_dir/data_card.json`, the exact
    training set (`output_dir/train_data`) and eval set (`output_dir/eval_data`), and return the saved
    copies on every rank (the other ranks get an empty report)."""
    state = PartialState()
    out = Path(args.output_dir)
    has_eval = args.eval_strategy != "no"
    if state.is_main_process:
        remove_replaced_run(args)
        print(f"training data:\n{data.report.summary()}", flush=True)
        write_json(out / "data_card.json", data.report.as_dict())
        data.train.save_to_disk(str(out / "train_data"))
        if data.eval is not None:
            data.eval.save_to_disk(str(out / "eval_data"))
    state.wait_for_everyone()
    from datasets import load_from_disk

    return StageData(
        train=load_from_disk(str(out / "train_data")),
        report=data.report if data is not None else DataReport(),
        eval=load_from_disk(str(out / "eval_data")) if has_eval else None,
    )


def training_summary(trainer, started: float, data_report: DataReport) -> dict:
    """Steps, tokens, losses, time, throughput and expert-load figures of a finished run. A resumed run's
    counts are the whole run's (the checkpoint carried them over, `KlearTrainerMixin.restore_run_counts`);
    its times and `tokens_per_s` are this launch's: the tokens trained since the resume over this launch's
    train_runtime_s."""
    history = trainer.state.log_history
    steps = [entry for entry in history if "loss" in entry]
    losses = [entry["loss"] for entry in steps]
    # The last count, not the largest: a resume from a checkpoint without the run's counts restarts it.
    num_tokens = next((entry["num_tokens"] for entry in reversed(history) if "num_tokens" in entry), 0)
    runtime = next((e["train_runtime"] for e in reversed(history) if "train_runtime" in e), None)
    resumed = trainer.resumed_from or {"step": None, "train_tokens": 0, "counts_restored": True}
    summary = {
        "global_steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "aux_loss_last": next((e["aux_loss"] for e in reversed(history) if "aux_loss" in e), None),
        "train_tokens": num_tokens,
        "resumed_from_step": resumed["step"],
        "train_runtime_s": runtime,
        "tokens_per_s": (num_tokens - resumed["train_tokens"]) / runtime if runtime else None,
        "wall_time_s": time.time() - started,
        "world_size": trainer.accelerator.num_processes,
        "first_step": steps[0] if steps else None,  # every metric logged, e.g. rewards/*, logps/*, moe/*
        "last_step": steps[-1] if steps else None,
        "data": data_report.as_dict(),
    }
    if not resumed["counts_restored"]:  # a checkpoint written without the run's counts
        summary["counted_since_resume"] = ["train_tokens", "expert_load", "rl"]
    if hasattr(trainer, "rl_summary"):  # the RL stage: rollouts, accuracy, zero-variance groups
        summary["rl"] = trainer.rl_summary()
    if trainer.expert_load.expert_layout is not None:
        summary["expert_parallel_layout"] = trainer.expert_load.expert_layout
    counts = trainer.expert_load_total()
    if counts is not None:
        figures = load_metrics(counts)
        summary["expert_load"] = {k: v for k, v in figures.items() if "/layer_" not in k}
        # Each routed token counted once (training forwards only, not checkpointing's recompute).
        summary["expert_load"]["tokens_per_expert"] = counts.tolist()
        shares = counts.double() / counts.sum(-1, keepdim=True).clamp(min=1)
        summary["expert_load"]["share_per_expert"] = [[round(x, 4) for x in layer] for layer in shares.tolist()]
    return summary


def loss_phrase(history: list[dict], logging_steps) -> str:
    """`loss 5.7046 -> 1.7450` from the logged steps; a run too short for `logging_steps` logged none, and
    then the Trainer's mean over the run is what there is."""
    losses = [entry["loss"] for entry in history if "loss" in entry]
    if losses:
        return f"loss {losses[0]:.4f} -> {losses[-1]:.4f}"
    mean = next((entry["train_loss"] for entry in reversed(history) if "train_loss" in entry), None)
    if mean is None:
        return "no loss logged"
    return f"mean loss {float(mean):.4f} (no step logged: logging_steps is {logging_steps})"


def save_and_judge(trainer, args: KlearArguments, started: float, data_report: DataReport, stage: str) -> None:
    """After `trainer.train()`: save the final model and `training_summary.json`; judge the saved model
    when the recipe has an enabled `judge:` section."""
    trainer.save_final_model(args.output_dir)
    judging = args.judge_section is not None and args.judge_section.enabled
    if judging:
        release_training_memory(trainer)
    if not trainer.accelerator.is_main_process:
        return
    summary = training_summary(trainer, started, data_report)
    write_json(Path(args.output_dir) / "training_summary.json", summary)
    print(f"{stage}: {summary['global_steps']} steps, {loss_phrase(trainer.state.log_history, args.logging_steps)}, "
          f"{int(summary['train_tokens'])} tokens, model saved to {args.output_dir}", flush=True)
    if args.judge_section is not None:
        from align.judging.saved_model import judge_saved_model

        load_models_unpartitioned()  # the judge loads the saved model on this rank alone; the others are done
        report = judge_saved_model(args.output_dir, Path(args.output_dir) / "judge", args.judge_section)
        if report is None and judging:
            raise RuntimeError(f"judging {args.output_dir} failed (the reason is logged above); the model is saved")
    else:
        print(f"judge it: python -m align.judging evaluate {args.output_dir} --out {args.output_dir}/judge "
              "(or add a `judge:` section to the recipe)", flush=True)


def load_models_unpartitioned() -> None:
    """Under a DeepSpeed ZeRO-3 launch, transformers loads every model partitioned across the ranks, which
    waits for all of them; a model one process loads alone (the judge's, a round's sampling) must not be.
    A later stage's TrainingArguments set ZeRO-3 up again."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


def release_training_memory(trainer, leave_process_group: bool = True) -> None:
    """On every rank, once the final model is saved: drop the model, its reference copy and the optimizer
    states, and leave the process group. The judge's answer engine can then have the whole node (at 46B,
    vLLM spreads the saved model over all its GPUs and sets up a process group of its own). On-policy
    rounds (align.iterate) keep the process group: the next round trains in the same processes."""
    import gc

    import torch

    trainer.accelerator.free_memory()  # accelerate's references to the DeepSpeed engine, optimizer, scheduler
    for name in ("model", "model_wrapped", "ref_model", "optimizer", "lr_scheduler", "deepspeed"):
        if getattr(trainer, name, None) is not None:
            setattr(trainer, name, None)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    state = PartialState()
    state.wait_for_everyone()  # no rank starts answering while another still holds its shards
    if leave_process_group:
        state.destroy_process_group()
