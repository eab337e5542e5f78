"""Where a round of on-policy DPO spends its time, and the two choices in it worth comparing.

    .venv/bin/python bench/iterate_phases.py [--work runs/bench-iterate] [--prompts-per-round 8] [--rounds 3]
        [--warmup-rounds 0] [--skip-phases] [--skip-sampling] [--skip-judge]

1. phases: the README's tiny recipe (`python -m align.iterate --config configs/iterate/tiny.yaml`), 2 rounds of
   --prompts-per-round prompts, from the README's 160-step SFT (built under --work if missing: tiny Klear, demo
   data, `align.sft --max_steps 160`), with a `judge:` section (MT-Bench, 1 question per category, 6 answer tokens)
   judged by the tests' loopback scripted judge. Each phase's seconds come from `round-N/phases.json`
   (sampled, scored = scoring and pairing, trained = DPO, judged) and are shown with their share of the round.
   One run, not interleaved: a profile, not a comparison.
2. sampling: a round's sampling phase (`align.iterate.sampling.sample_round`, as the round calls it: engine
   start-up, 16 prompts x 4 samples at temperature 1, up to 32 tokens, engine closed) with vLLM against
   transformers on the same random tiny Klear with head_dim 64 (vLLM's CPU build has no attention kernel for
   the tiny factory's 16), each run in its own process (`harness.run_worker`). Memory: the resident memory of
   the worker and its child processes (vLLM's engine core and worker; shared pages count once per process),
   sampled every 10 ms during the phase, and again after `sample_round` returned (the engine closed: what DPO
   would start with), with the engine's processes left then (phases.json's `engine_processes_left`).
3. judge: the `judge` scorer (`align.iterate.scorers.score_with_judge`) on the phase run's round-1 samples, both
   orders per comparison, against the loopback scripted judge with a 20 ms delay per call standing in for a judge
   model's latency: concurrency 1 (the baseline) against 8, and a resumed round (every call from the cache).
Sections 2 and 3 go through bench/harness.py (interleaved rounds, order rotated, median and spread of the
per-round ratios). Prints each section's table and one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import harness  # bench/ is on the path when a bench script runs
from peak_rss import PeakRSS

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("sampled", "scored", "trained", "judged")
SAMPLING = dict(prompts=16, samples_per_prompt=4, temperature=1.0, max_new_tokens=32)
JUDGE_DELAY_S = 0.02


def python(*args: str, log: Path) -> None:
    with log.open("a") as out:
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, stdout=out, stderr=subprocess.STDOUT)


def recipe_inputs(work: Path) -> tuple[Path, Path]:
    """The README's commands for the tiny recipe's inputs (skipped where their output exists)."""
    log = work / "prepare.log"
    if not (work / "tiny-klear/config.json").is_file():
        python("-m", "align.models.klear.tiny", "--out", str(work / "tiny-klear"), log=log)
    if not (work / "data/rl.jsonl").is_file():
        python("-m", "align.data.demo", "--out", str(work / "data"), log=log)
    sft = work / "sft-tiny-160"
    if not (sft / "config.json").is_file():
        python("-m", "align.sft", "--config", "configs/sft/tiny.yaml", "--model_name_or_path", str(work / "tiny-klear"),
               "--dataset_name", str(work / "data/sft.jsonl"), "--eval_dataset_name", str(work / "data/sft_eval.jsonl"),
               "--max_steps", "160", "--save_strategy", "no", "--output_dir", str(sft), log=log)
    return sft, work / "data/rl.jsonl"


def phase_profile(work: Path, policy: Path, prompts: Path, prompts_per_round: int, judge_url: str) -> dict:
    out = work / f"iterate-{int(time.time())}"
    judge = {"benchmarks": ["mt_bench"], "questions_per_category": 1, "max_new_tokens": 6,
             "answer_engine": "transformers", "base_url": judge_url, "model": "scripted-judge"}
    started = time.perf_counter()
    python("-m", "align.iterate", "--config", "configs/iterate/tiny.yaml", "--model_name_or_path", str(policy),
           "--prompts_dataset", str(prompts), "--output_dir", str(out), "--prompts_per_round", str(prompts_per_round),
           "--judge", json.dumps(judge), log=work / f"{out.name}.log")
    wall = time.perf_counter() - started
    rounds = []
    for round_dir in sorted(out.glob("round-*"), key=lambda p: int(p.name.split("-")[1])):
        done = json.loads((round_dir / "phases.json").read_text())
        seconds = {phase: done[phase]["seconds"] for phase in PHASES}
        total = sum(seconds.values())
        rounds.append({"round": round_dir.name, "engine": done["sampled"]["engine"], "pairs": done["scored"]["pairs"],
                       "dpo_steps": done["trained"]["global_steps"], "seconds": seconds, "round_s": total,
                       "share": {phase: s / total for phase, s in seconds.items()}})
    return {"output_dir": str(out), "wall_s": wall, "rounds": rounds}


def sampling_worker(engine: str, policy: str) -> None:
    """One round's sampling phase with `engine`; emits its seconds and memory (harness.emit)."""
    from align.iterate.sampling import sample_round

    prompts = [{"prompt": [{"role": "user", "content": f"Question {n}: please answer the question."}]}
               for n in range(SAMPLING["prompts"])]
    args = SimpleNamespace(sampling_engine=engine, sampling_batch_size=16, seed=0,
                           samples_per_prompt=SAMPLING["samples_per_prompt"],
                           sampling_temperature=SAMPLING["temperature"],
                           sampling_max_new_tokens=SAMPLING["max_new_tokens"])
    with PeakRSS(include_children=True) as memory:
        rows, stats = sample_round(policy, prompts, args, round_number=1)
    after, children_left = memory.rss(), len(memory.process.children(recursive=True))
    answers = sum(len(row["samples"]) for row in rows)
    mib = 1 << 20
    harness.emit({"engine": stats["engine"], "seconds": stats["seconds"], "answers_per_s": answers / stats["seconds"],
                  "rss_before_mib": memory.baseline / mib, "rss_peak_mib": memory.peak / mib, "rss_after_close_mib": after / mib,
                  "engine_processes": stats["engine_processes"], "engine_processes_left": stats["engine_processes_left"],
                  "child_processes_after_close": children_left, "answers": answers, "truncated": stats.get("truncated")})


def sampling_comparison(work: Path, rounds: int, warmup_rounds: int):
    from align.models.klear.tiny import build_tiny_klear

    policy = work / "tiny-klear-hd64"
    if not (policy / "config.json").is_file():
        build_tiny_klear(policy, seed=0, head_dim=64)
    env = {"PYTHONPATH": str(ROOT)}
    variants = {engine: (lambda engine=engine: harness.run_worker(
        [sys.executable, __file__, "--sampling-worker", engine, str(policy)], env=env, timeout=600))
        for engine in ("transformers", "vllm")}
    return harness.compare(variants, baseline="transformers", rounds=rounds, warmup_rounds=warmup_rounds,
                           metrics={"seconds": "lower", "rss_peak_mib": "lower", "rss_after_close_mib": "lower"})


def judge_comparison(work: Path, samples: Path, rounds: int, warmup_rounds: int):
    from align.iterate.rounds import read_jsonl
    from align.iterate.scorers import score_with_judge
    from align.judging.config import JudgeConfig
    from tests.judging.judging_support import start_scripted_judge, stop

    rows = read_jsonl(samples)
    judge = start_scripted_judge(work / "delayed-judge", JUDGE_DELAY_S, "--prefer", "Paris")
    runs = itertools.count()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            filled = Path(tmp) / "filled-cache"

            def scored(concurrency: int, cache: Path) -> dict:
                config = JudgeConfig(base_url=judge.base_url, model="scripted-judge", concurrency=concurrency)
                args = SimpleNamespace(judge_config=lambda: config)
                started = time.perf_counter()
                result = score_with_judge(rows, args, 1, cache)
                seconds = time.perf_counter() - started
                return {"seconds": seconds, "comparisons": result.figures["comparisons"],
                        "judge_calls": result.figures["judge_calls"], "pairs": len(result.pairs)}

            scored(8, filled)  # untimed: fills the cache the resumed variant reads
            variants = {"c1": lambda: scored(1, Path(tmp) / f"cache-{next(runs)}"),
                        "c8": lambda: scored(8, Path(tmp) / f"cache-{next(runs)}"),
                        "c8-cached": lambda: scored(8, filled)}
            return harness.compare(variants, baseline="c1", rounds=rounds, warmup_rounds=warmup_rounds,
                                   metrics={"seconds": "lower"})
    finally:
        stop(judge.process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-iterate")
    parser.add_argument("--prompts-per-round", type=int, default=8)
    parser.add_argument("--skip-phases", action="store_true", help="reuse the latest phase run under --work")
    parser.add_argument("--skip-sampling", action="store_true")
    parser.add_argument("--skip-judge", action="store_true")
    parser.add_argument("--sampling-worker", nargs=2, metavar=("ENGINE", "POLICY"), help=argparse.SUPPRESS)
    harness.add_arguments(parser, rounds=3)
    args = parser.parse_args()
    if args.sampling_worker:
        sampling_worker(*args.sampling_worker)
        return
    sys.path.insert(0, str(ROOT))  # tests.judging's scripted judge
    from tests.judging.judging_support import start_scripted_judge, stop

    args.work.mkdir(parents=True, exist_ok=True)
    result = {"load_average_start": harness.load_average(), "machine": "shared, loaded 2-core CPU machine"}
    if args.skip_phases:
        latest = max(args.work.glob("iterate-*/"), key=lambda p: p.stat().st_mtime)
        result["phases"] = {"output_dir": str(latest), "reused": True}
    else:
        policy, prompts = recipe_inputs(args.work)
        judge = start_scripted_judge(args.work / "judge", 0.0)
        try:
            result["phases"] = phase_profile(args.work, policy, prompts, args.prompts_per_round, judge.base_url)
        finally:
            stop(judge.process)
        print(f"phases of the tiny recipe ({args.prompts_per_round} prompts x 4 samples a round; one run, "
              f"{result['phases']['wall_s']:.0f} s wall in all, model loads and start-up included):")
        for r in result["phases"]["rounds"]:
            shares = ", ".join(f"{phase} {r['seconds'][phase]:.1f} s ({100 * r['share'][phase]:.0f}%)" for phase in PHASES)
            print(f"  {r['round']} ({r['engine']}, {r['pairs']} pairs, {r['dpo_steps']} DPO steps): {shares}; "
                  f"{r['round_s']:.1f} s")
    if not args.skip_sampling:
        sampling = sampling_comparison(args.work, args.rounds, args.warmup_rounds)
        print(f"\nsampling phase, {SAMPLING} on a random tiny Klear (head_dim 64), its own process per run:")
        print(sampling.table())
        for engine in sampling.variants:
            runs = [r["results"][engine] for r in sampling.rounds]
            print(f"  {engine}: engine processes {sorted({r['engine_processes'] for r in runs})}, of them left after "
                  f"close {sorted({r['engine_processes_left'] for r in runs})}; child processes of the worker left "
                  f"after close {sorted({r['child_processes_after_close'] for r in runs})} (vLLM: multiprocessing's "
                  "resource tracker, alive as long as the process)")
        result["sampling"] = sampling.as_dict()
    if not args.skip_judge:
        judging = judge_comparison(args.work, Path(result["phases"]["output_dir"]) / "round-1/samples.jsonl",
                                   args.rounds, args.warmup_rounds)
        first = judging.rounds[0]["results"]["c1"]
        print(f"\njudge scorer on round 1's samples: {first['comparisons']} comparisons, {first['judge_calls']} calls "
              f"(both orders), {JUDGE_DELAY_S * 1000:.0f} ms per call at the loopback judge:")
        print(judging.table())
        result["judge"] = {**judging.as_dict(), "delay_s": JUDGE_DELAY_S}
    result["load_average_end"] = harness.load_average()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
