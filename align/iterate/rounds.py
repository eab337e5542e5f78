"""One round after another: sample the policy, score and pair, train DPO from it (and against it), judge.

    output_dir/
      prompts_card.json          the prompt set's counts (read, decontaminated, deduplicated)
      round-N/phases.json        which phases are done (written atomically after each)
      round-N/samples.jsonl      one row per prompt: its samples, each with its score(s)
      round-N/pairs.jsonl        TRL's conversational preference rows (align.dpo reads them on their own)
      round-N/scoring.json       pairs kept, dropped by reason, mean reward / win rate
      round-N/dpo/               align.dpo's run: the round's policy, training_summary.json, data_card.json
      round-N/judge/             the judge report (with a `judge:` section)
      rounds.json, rounds.md, rounds.png   every round's figures, and a chart of them across rounds

Resume: a phase whose marker is in phases.json is not run again; training resumes from the DPO run's
last checkpoint. Ranks: sampling, scoring and judging run on the main process while the other ranks
wait; DPO runs on every rank (see docs/iterate.md).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import time
from pathlib import Path

from accelerate import PartialState

from align.common.files import write_json, write_jsonl
from align.training.run import load_models_unpartitioned, on_main_process, release_training_memory

from .prompts import PromptSet
from .sampling import sample_round
from .scorers import Scored, score_round

PHASES = ("sampled", "scored", "trained", "judged")


class RoundDir:
    def __init__(self, output_dir: Path, number: int):
        self.number = number
        self.path = Path(output_dir) / f"round-{number}"
        self.samples = self.path / "samples.jsonl"
        self.pairs = self.path / "pairs.jsonl"
        self.scoring = self.path / "scoring.json"
        self.dpo = self.path / "dpo"
        self.judge = self.path / "judge"
        self.markers = self.path / "phases.json"

    def done(self) -> dict:
        return json.loads(self.markers.read_text(encoding="utf-8")) if self.markers.is_file() else {}

    def mark(self, phase: str, facts: dict) -> None:
        write_json(self.markers, {**self.done(), phase: {"finished": time.time(), **facts}})

    def finished(self) -> bool:
        return "judged" in self.done()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main_process_phase(round_dir: RoundDir, phase: str, run) -> None:
    """`run()` on the main process only, unless its marker says `phase` is done: the main process decides,
    so every rank does the same (align.training.run.on_main_process: the other ranks wait, and its user
    error, e.g. a round without usable pairs, is raised on every rank)."""
    def task():
        if phase not in round_dir.done():
            run()

    on_main_process(task)


def main_process_decides(question):
    """`question()` answered on the main process and shared: every rank then takes the same branch."""
    return on_main_process(question, share_result=True)


def sampling_phase(round_dir: RoundDir, policy: str, prompts: list[dict], args) -> None:
    def run():
        load_models_unpartitioned()
        rows, stats = sample_round(policy, prompts, args, round_dir.number)
        write_jsonl(round_dir.samples, rows)
        round_dir.mark("sampled", {"policy": policy, **stats})
        closed = (f"; engine closed, {stats['engine_processes_left']} of its {stats['engine_processes']} "
                  "process(es) left" if stats["engine_processes"] else "")
        print(f"round {round_dir.number}: sampled {args.samples_per_prompt} answers to each of {len(rows)} prompts "
              f"from {policy} ({stats['engine']}, {stats['seconds']:.1f} s{closed})", flush=True)

    main_process_phase(round_dir, "sampled", run)


def scoring_phase(round_dir: RoundDir, args) -> None:
    def run():
        started = time.time()
        rows = read_jsonl(round_dir.samples)
        scored: Scored = score_round(rows, args, round_dir.number, round_dir.path, Path(args.output_dir) / "judge_cache")
        write_jsonl(round_dir.samples, scored.rows)  # the samples with their scores
        facts = {"prompts": len(rows), "samples": sum(len(r["samples"]) for r in rows), "pairs": len(scored.pairs),
                 "dropped": dict(scored.dropped), **scored.figures, "seconds": round(time.time() - started, 3)}
        write_json(round_dir.scoring, facts)
        scored.check_usable(round_dir.number)  # no pair: one line, and the round is not marked scored
        write_jsonl(round_dir.pairs, scored.pairs)
        round_dir.mark("scored", {"pairs": len(scored.pairs), "seconds": facts["seconds"]})
        dropped = ", ".join(f"{n} {why}" for why, n in scored.dropped.items()) or "none"
        print(f"round {round_dir.number}: {len(scored.pairs)} pairs from {len(rows)} prompts by {args.scorer} "
              f"(dropped: {dropped})", flush=True)

    main_process_phase(round_dir, "scored", run)


def training_phase(round_dir: RoundDir, policy: str, script_args, args, model_args) -> None:
    """align.dpo's own `main` on every rank: the round's pairs, from `policy` and against it (its
    reference is a copy of the starting model, or its precomputed log-probs, as the recipe says). The
    judge runs afterwards in the judging phase, on the main process, with the process group kept."""
    from align.dpo.__main__ import main as train_dpo

    trained, summary_written = main_process_decides(
        lambda: ("trained" in round_dir.done(), (round_dir.dpo / "training_summary.json").is_file()))
    if trained:
        return
    started = time.time()
    if not summary_written:  # else: trained, then stopped before the marker
        # resume_from_checkpoint None: align.dpo's resume_point (on the main process) takes the last complete
        # checkpoint of an interrupted run in round_dir.dpo, or starts afresh when there is none.
        round_args = dataclasses.replace(args, output_dir=str(round_dir.dpo), judge=None,
                                         resume_from_checkpoint=None, overwrite_output_dir=False)
        trainer = train_dpo(dataclasses.replace(script_args, dataset_name=str(round_dir.pairs)), round_args,
                            dataclasses.replace(model_args, model_name_or_path=policy))
        release_training_memory(trainer, leave_process_group=False)  # the next round samples in this process
        del trainer
        gc.collect()

    def mark_trained():
        summary = json.loads((round_dir.dpo / "training_summary.json").read_text(encoding="utf-8"))
        round_dir.mark("trained", {"policy": str(round_dir.dpo), "seconds": round(time.time() - started, 3),
                                   "global_steps": summary["global_steps"]})

    main_process_phase(round_dir, "trained", mark_trained)


def judging_phase(round_dir: RoundDir, args) -> None:
    def run():
        started = time.time()
        if args.judge_section is not None and args.judge_section.enabled:
            from align.judging.saved_model import judge_saved_model

            load_models_unpartitioned()
            if judge_saved_model(round_dir.dpo, round_dir.judge, args.judge_section) is None:
                raise RuntimeError(f"judging {round_dir.dpo} failed (the reason is logged above); the round's model is "
                                   "saved, and the same command judges it again")
        round_dir.mark("judged", {"seconds": round(time.time() - started, 3)})

    main_process_phase(round_dir, "judged", run)


def round_summary(round_dir: RoundDir) -> dict:
    """The round's line in rounds.json, from what its phases wrote."""
    phases = round_dir.done()
    scoring = json.loads(round_dir.scoring.read_text(encoding="utf-8"))
    training = json.loads((round_dir.dpo / "training_summary.json").read_text(encoding="utf-8"))
    last = training.get("last_step") or {}
    judge_summary = round_dir.judge / "summary.json"
    judge_scores = None
    if judge_summary.is_file():
        from align.judging.summary import headline

        judge_scores = headline(json.loads(judge_summary.read_text(encoding="utf-8")))
    return {
        "round": round_dir.number,
        "policy": phases["sampled"]["policy"],
        "trained_policy": str(round_dir.dpo),
        **{key: scoring.get(key) for key in ("prompts", "samples", "pairs", "dropped", "mean_reward", "win_rate",
                                               "comparisons", "agreed")},
        "dpo": {"global_steps": training["global_steps"], "first_loss": training["first_loss"],
                "final_loss": training["final_loss"],
                **{key: value for key, value in last.items() if key.startswith(("rewards/", "logps/"))}},
        "judge": judge_scores,
        "seconds": {phase: phases[phase].get("seconds") for phase in PHASES if phase in phases},
        "sampling_engine": phases["sampled"].get("engine"),
    }


def write_rounds_report(output_dir: Path, summaries: list[dict]) -> None:
    from .report import write_report

    write_json(output_dir / "rounds.json", {"rounds": summaries})
    write_report(output_dir, summaries)


def run_rounds(prompt_set: PromptSet, script_args, args, model_args) -> list[dict]:
    """Rounds 1..args.rounds: each finished round is kept as it is; the first unfinished one continues at
    its first unfinished phase."""
    output_dir = Path(args.output_dir)
    state = PartialState()
    policy = model_args.model_name_or_path
    summaries = []
    available = prompt_set.rounds_available(args.prompts_per_round)
    for number in range(1, args.rounds + 1):
        round_dir = RoundDir(output_dir, number)
        if number > available:
            if state.is_main_process:
                print(f"the prompt set ({len(prompt_set.rows)} prompts, {args.prompts_per_round} a round) is used up "
                      f"after {available} round(s); stopping before round {number}", flush=True)
            break
        if main_process_decides(round_dir.finished):
            if state.is_main_process:
                print(f"round {number}: finished earlier, kept as it is", flush=True)
        else:
            sampling_phase(round_dir, policy, prompt_set.for_round(number, args.prompts_per_round), args)
            scoring_phase(round_dir, args)
            training_phase(round_dir, policy, script_args, args, model_args)
            judging_phase(round_dir, args)
        policy = str(round_dir.dpo)
        summaries.append(main_process_decides(lambda: round_summary(round_dir)))  # the same list on every rank
        on_main_process(lambda: write_rounds_report(output_dir, summaries))
    return summaries
