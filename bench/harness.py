"""Interleaved A/B benchmark rounds on a shared, loaded machine (`from harness import compare`).

Run one variant after the other, once each, and a neighbour's load landing on one side swings the
ratio (`bench/dpo_throughput.py` gave 1.53x and 9.67x an hour apart that way). `compare` runs every
variant once per round, several rounds, rotating the order each round (A B C, B C A, C A B, ...), and
takes each variant's ratio to the baseline *within* a round, where both saw about the same load.
It reports each variant's median and spread (min-max) per metric, the median per-round ratio
against the baseline with its min-max and interquartile range, and the load average before and
after (and around each round), so that the figure says how noisy its moment was.

A variant is a callable with no arguments that runs one round and returns a dict of numbers
(`{"tokens_per_s": 831.2, "peak_rss_rise_mib": 1236.0}`). Running each round in its own process
keeps peak memory separate: `run_worker` starts one and reads the line that `emit` printed.

    import harness                                     # bench/ is on sys.path when a bench script runs

    def ours():  return {"items_per_s": measure(new_path)}
    def stock(): return {"items_per_s": measure(old_path)}

    result = harness.compare({"stock": stock, "ours": ours}, baseline="stock", rounds=5,
                             metrics={"items_per_s": "higher"})
    print(result.table())                              # medians, spreads, ratios, load averages
    print(json.dumps(result.as_dict()))                # the same, for docs/benchmarks.md and CI

A ratio is variant / baseline for every metric, whichever direction is better; the direction only
labels the table ("higher is better" / "lower is better"). Warm-up rounds (`warmup_rounds`) run
every variant but are not counted. Nothing here asserts a speed: the numbers are for people.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

RESULT_PREFIX = "RESULT "


def emit(measurement: Mapping) -> None:
    """Print one round's measurement where `run_worker` finds it (a worker process's last act)."""
    print(RESULT_PREFIX + json.dumps(dict(measurement)), flush=True)


def run_worker(command: list[str], env: Mapping[str, str] | None = None, timeout: float | None = None,
               cwd=None) -> dict:
    """Run `command` (a worker that calls `emit`), with `env` added to this process's environment, and
    return what it emitted; exit with its output if it fails."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=None if env is None else {**os.environ, **env})
    line = next((l for l in reversed(done.stdout.splitlines()) if l.startswith(RESULT_PREFIX)), None)
    if done.returncode or line is None:
        sys.exit(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(line.removeprefix(RESULT_PREFIX))


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages (what else shared the cores)."""
    return [round(x, 2) for x in os.getloadavg()]


def spread(values: list[float]) -> dict:
    """Median, min, max, interquartile range and count of `values`."""
    ordered = sorted(values)
    quartiles = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1],
            "q1": quartiles[0], "q3": quartiles[2], "n": len(ordered)}


def round_orders(names: list[str], rounds: int) -> list[list[str]]:
    """The order of the variants in each round: rotated by one each round, so no variant is always first."""
    return [names[r % len(names):] + names[: r % len(names)] for r in range(rounds)]


@dataclass
class Comparison:
    baseline: str
    metrics: dict[str, str]  # metric -> "higher" or "lower" (which is better)
    rounds: list[dict] = field(default_factory=list)  # {"order", "load_before", "load_after", "results": {variant: {...}}}
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)

    @property
    def variants(self) -> list[str]:
        return list(self.rounds[0]["results"])

    def values(self, variant: str, metric: str) -> list[float]:
        return [r["results"][variant][metric] for r in self.rounds]

    def ratios(self, variant: str, metric: str) -> list[float]:
        """variant / baseline, round by round (both measured minutes apart at most)."""
        return [r["results"][variant][metric] / r["results"][self.baseline][metric] for r in self.rounds]

    def as_dict(self) -> dict:
        return {
            "baseline": self.baseline, "rounds": len(self.rounds), "metrics": self.metrics,
            "load_average_before": self.load_before, "load_average_after": self.load_after,
            "variants": {v: {m: spread(self.values(v, m)) for m in self.metrics} for v in self.variants},
            "ratios": {v: {m: {**spread(self.ratios(v, m)), "per_round": self.ratios(v, m)} for m in self.metrics}
                       for v in self.variants if v != self.baseline},
            "per_round": self.rounds,
        }

    def table(self) -> str:
        lines = [f"{len(self.rounds)} interleaved rounds, order rotated each round; load average (1/5/15 min) "
                 f"{self.load_before} before, {self.load_after} after"]
        for metric, better in self.metrics.items():
            lines.append(f"\n{metric} ({better} is better): median [min-max] over rounds; ratio to {self.baseline} "
                         f"per round: median [min-max] (IQR)")
            for v in self.variants:
                s = spread(self.values(v, metric))
                row = f"  {v:14} {s['median']:12.4g} [{s['min']:.4g}-{s['max']:.4g}]"
                if v != self.baseline:
                    r = spread(self.ratios(v, metric))
                    row += f"   {r['median']:.2f}x [{r['min']:.2f}-{r['max']:.2f}] ({r['q1']:.2f}-{r['q3']:.2f})"
                lines.append(row)
        return "\n".join(lines)


def compare(variants: Mapping[str, Callable[[], Mapping[str, float]]], *, baseline: str,
            metrics: Mapping[str, str], rounds: int = 3, warmup_rounds: int = 0,
            log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> Comparison:
    """Run every variant once per round for `warmup_rounds` + `rounds` rounds, order rotated each round.

    `metrics` names the keys of each measurement to summarise and whether higher or lower is better;
    a measurement may carry more keys (kept in `per_round`). `log` gets one line per measurement."""
    names = list(variants)
    if baseline not in variants:
        raise ValueError(f"baseline {baseline!r} is not one of the variants {names}")
    if rounds < 1 or warmup_rounds < 0:
        raise ValueError(f"rounds must be at least 1 and warmup_rounds at least 0 (got {rounds}, {warmup_rounds})")
    for metric, better in metrics.items():
        if better not in ("higher", "lower"):
            raise ValueError(f"metric {metric!r}: say 'higher' or 'lower' is better, not {better!r}")
    result = Comparison(baseline=baseline, metrics=dict(metrics), load_before=load_average())
    for index, order in enumerate(round_orders(names, warmup_rounds + rounds)):
        counted = index >= warmup_rounds
        label = f"round {index - warmup_rounds + 1}/{rounds}" if counted else f"warm-up {index + 1}/{warmup_rounds}"
        this_round = {"order": order, "load_before": load_average(), "results": {}}
        for name in order:
            started = time.perf_counter()
            measurement = dict(variants[name]())
            missing = [m for m in metrics if not isinstance(measurement.get(m), (int, float))]
            if missing:
                raise ValueError(f"variant {name!r} returned no number for {missing}: {measurement}")
            this_round["results"][name] = measurement
            log(f"{label} {name}: " + ", ".join(f"{m}={measurement[m]:.4g}" for m in metrics)
                + f" ({time.perf_counter() - started:.1f} s, load {load_average()[0]})")
        this_round["load_after"] = load_average()
        this_round["results"] = {name: this_round["results"][name] for name in names}  # same key order every round
        if counted:
            result.rounds.append(this_round)
    result.load_after = load_average()
    return result


def add_arguments(parser, rounds: int = 3, warmup_rounds: int = 0) -> None:
    """The harness's own flags, the same in every bench script: --rounds, --warmup-rounds."""
    parser.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds counted (order rotated)")
    parser.add_argument("--warmup-rounds", type=int, default=warmup_rounds, help="rounds run first and not counted")
