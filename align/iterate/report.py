"""rounds.md and rounds.png: every round's figures in a table, and a chart of them across rounds."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def chart_series(summaries: list[dict]) -> dict[str, list[float | None]]:
    """The figures drawn, one value per round (None where a round has none)."""
    series = {
        "pairs": [s["pairs"] for s in summaries],
        "mean reward of the samples": [s.get("mean_reward") for s in summaries],
        "win rate of the samples": [s.get("win_rate") for s in summaries],
        "DPO rewards/margins (last step)": [s["dpo"].get("rewards/margins") for s in summaries],
    }
    for benchmark in sorted({b for s in summaries for b in (s.get("judge") or {})}):
        series[f"judge: {benchmark}"] = [next(iter(((s.get("judge") or {}).get(benchmark) or {None: None}).values()))
                                         for s in summaries]
    return {name: values for name, values in series.items() if any(v is not None for v in values)}


def draw_chart(path: Path, summaries: list[dict]) -> None:
    series = chart_series(summaries)
    rounds = [s["round"] for s in summaries]
    figure, axes = plt.subplots(len(series), 1, figsize=(6, 2.2 * len(series)), sharex=True, squeeze=False)
    for axis, (name, values) in zip(axes[:, 0], series.items()):
        axis.plot(rounds, [v if v is not None else float("nan") for v in values], "o-")
        axis.set_ylabel(name, fontsize="small")
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("round")
    axes[-1, 0].set_xticks(rounds)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(output_dir: Path, summaries: list[dict]) -> Path:
    lines = ["# On-policy DPO rounds", "", "![figures across rounds](rounds.png)", "",
             "| round | prompts | samples | pairs | dropped | mean reward | win rate | DPO steps | DPO loss | judge |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summaries:
        dropped = ", ".join(f"{n} {why}" for why, n in (s["dropped"] or {}).items()) or "-"
        judge = "; ".join(f"{b}: {fmt(next(iter(v.values()), None), 2)}" for b, v in (s.get("judge") or {}).items()) or "-"
        loss = f"{fmt(s['dpo']['first_loss'])} -> {fmt(s['dpo']['final_loss'])}"
        lines.append(f"| {s['round']} | {s['prompts']} | {s['samples']} | {s['pairs']} | {dropped} | "
                     f"{fmt(s.get('mean_reward'))} | {fmt(s.get('win_rate'))} | {s['dpo']['global_steps']} | {loss} | "
                     f"{judge} |")
    lines += ["", "Each round's judge report: `round-N/judge/report.md` (with a `judge:` section)."]
    draw_chart(output_dir / "rounds.png", summaries)
    path = output_dir / "rounds.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
