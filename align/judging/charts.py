"""Radar charts (PNG) of per-category scores, this run solid, the previous run dashed."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

MAX_MODELS_DRAWN = 10
# AlignBench's English category names (its README); the bundled fonts have no CJK glyphs.
ALIGNBENCH_ENGLISH = {
    "基本任务": "Fundamental",
    "中文理解": "Chinese Understanding",
    "综合问答": "Open-ended QA",
    "文本写作": "Writing",
    "角色扮演": "Role Play",
    "专业能力": "Professional",
    "数学计算": "Mathematics",
    "逻辑推理": "Reasoning",
}


def label(category: str) -> str:
    return ALIGNBENCH_ENGLISH.get(category, category)


def radar_chart(
    path: Path,
    title: str,
    current: dict[str, dict[str, float | None]],
    previous: dict[str, dict[str, float | None]] | None = None,
    previous_label: str = "previous run",
    max_value: float = 10.0,
) -> str:
    """Draw {model: {category: score}}; returns a caption that says what was left out."""
    ranked = sorted(current, key=lambda m: -sum(v or 0 for v in current[m].values()))
    drawn = ranked[:MAX_MODELS_DRAWN]
    categories = sorted({c for scores in current.values() for c in scores})
    angles = [2 * math.pi * i / len(categories) for i in range(len(categories))] if categories else []
    figure = plt.figure(figsize=(7, 7))
    axes = figure.add_subplot(polar=True)
    for index, model in enumerate(drawn):
        color = f"C{index % 10}"
        for scores, style, suffix in ((current[model], "-", ""), ((previous or {}).get(model), "--", f" ({previous_label})")):
            if not scores:
                continue
            values = [scores.get(c) or 0.0 for c in categories]
            axes.plot(angles + angles[:1], values + values[:1], style, color=color, label=model + suffix)
            if style == "-":
                axes.fill(angles + angles[:1], values + values[:1], color=color, alpha=0.08)
    axes.set_xticks(angles)
    axes.set_xticklabels([label(c) for c in categories])
    axes.set_ylim(0, max_value)
    axes.set_title(title)
    axes.legend(loc="upper right", bbox_to_anchor=(1.35, 1.12), fontsize="small")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    caption = f"{title}: per-category scores, 0 to {max_value:g}."
    if len(ranked) > len(drawn):
        caption += f" The {len(drawn)} best of {len(ranked)} models are drawn; the tables list all."
    if previous:
        caption += f" Dashed: {previous_label}."
    return caption
