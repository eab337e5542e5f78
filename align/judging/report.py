"""The human report: report.md and report.html (same content), radar PNGs, summary.json.

`python -m align.judging report DIR...` calls `write_report(DIR, rebuild=True)`: it recomputes
every finished run's summary from its judgments, so the report always matches the rows.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from align.data.benchmarks import DataError
from .charts import radar_chart
from align.common.files import write_json

from .runs import list_runs
from .summary import history_entry, run_summaries
from .tasks import ALIGNBENCH, MT_BENCH, MT_BENCH_PAIR

TITLES = {MT_BENCH: "MT-Bench", MT_BENCH_PAIR: "MT-Bench pairwise", ALIGNBENCH: "AlignBench v1.1"}

# A block is ("h1"|"h2"|"p"|"warn"|"pre", text), ("table", headers, rows) or ("img", file, caption).
Block = tuple


class NoFinishedRun(DataError):
    pass


def fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ci(ci: list[float] | None) -> str:
    return "n/a" if not ci else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def when(timestamp: float | None) -> str:
    return "unfinished" if not timestamp else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def _mt_bench_blocks(scores: dict) -> list[Block]:
    blocks: list[Block] = [("h2", "MT-Bench (single-answer grading, 1 to 10)")]
    rows = [
        [
            model,
            fmt(s["overall"]),
            fmt_ci(s["ci95"]["overall"]),
            fmt(s["turn_1"]),
            fmt(s["turn_2"]),
            f"{s['n_scored']}/{s['n_items']}",
            str(s["judge_calls_failed"]),
        ]
        for model, s in sorted(scores.items(), key=lambda kv: -(kv[1]["overall"] or 0))
    ]
    blocks.append(("table", ["model", "overall", "95% CI", "turn 1", "turn 2", "scored/items", "failed calls"], rows))
    categories = sorted({c for s in scores.values() for c in s["per_category"]})
    blocks.append(
        ("table", ["model", *categories], [[m, *(fmt(s["per_category"].get(c)) for c in categories)] for m, s in scores.items()])
    )
    for model, s in scores.items():
        reasons = []
        if s.get("items_with_several_rows"):
            reasons.append(f"it averages every row, and {s['items_with_several_rows']} item(s) have several rows "
                           "(repeats, or duplicates from re-running gen_judgment.py), each counted once per row; "
                           "here an item scores the median of its rows")
        if s.get("retried_items"):
            reasons.append(f"it does not retry: {s['retried_items']} judgment(s) unparseable at first and retried here "
                           "would be dropped there as -1, or read from a single-bracket [n]")
        if s["judge_calls_failed"]:
            reasons.append(f"{s['judge_calls_failed']} judgment(s) failed here for good and are excluded; FastChat drops "
                           "its -1 too, but reads a single-bracket [n] or an out-of-range [[x]] as a rating")
        blocks += _upstream_block(model, "FastChat's show_result", s["overall"], s.get("fastchat_show_result"), reasons)
    return blocks


UPSTREAM_READING = {
    "FastChat's show_result": "it reads a single-bracket [n] or an out-of-range [[x]] as a rating, and a "
                              "pairwise \"[[A]]\" anywhere as A's win",
    "THUDM's show_result": "it reads only 'key': integer in single quotes, so a double-quoted dict is lost (-1) "
                           "and a decimal score truncated",
}


def _upstream_block(model: str, tool: str, ours: float | None, theirs: float | None, reasons: list[str]) -> list[Block]:
    """One line saying what the original tool would print, when there are failures or duplicates or
    the figures differ (see upstream.py)."""
    same = theirs is not None and ours is not None and abs(theirs - ours) < 5e-5
    if not reasons and (same or theirs is None and ours is None):
        return []
    why = "; ".join(reasons) if reasons else UPSTREAM_READING[tool]
    return [("p", f"{model}: {tool} would print {fmt(theirs, 4)} where this report says {fmt(ours, 4)}: {why}.")]


def _pairwise_blocks(scores: dict) -> list[Block]:
    rows = [
        [
            model,
            s["baseline"],
            str(s["win"]),
            str(s["loss"]),
            str(s["tie"]),
            str(s["inconsistent"]),
            fmt(s["win_rate"], 3),
            fmt(s["win_rate_adjusted"], 3),
            fmt_ci(s["ci95"]["win_rate_adjusted"]),
            str(s["pairs_without_verdict"]),
        ]
        for model, s in sorted(scores.items(), key=lambda kv: -(kv[1]["win_rate_adjusted"] or 0))
    ]
    headers = ["model", "against", "win", "loss", "tie", "of which inconsistent", "win rate", "adjusted", "95% CI", "no verdict"]
    all_pairs = any(s["baseline"] == "all other models" for s in scores.values())
    blocks: list[Block] = [
        ("h2", "MT-Bench pairwise, every pair of models (both orders)" if all_pairs
         else "MT-Bench pairwise against a baseline (both orders)"),
        ("p", "A win needs both orders to agree; a tie in either order or a disagreement counts as a tie; a pair "
              "with an order the judge gave no verdict for is counted under 'no verdict' and left out. "
              "Adjusted win rate = (win + tie / 2) / pairs."
              + (" Each pair counts for both of its models." if all_pairs else "")),
        ("table", headers, rows),
    ]
    for model, s in scores.items():
        reasons = []
        if s["pairs_without_verdict"] or s["judge_calls_failed"]:
            reasons.append(f"{s['judge_calls_failed']} game(s) failed here after retries; FastChat does not retry, "
                           "drops a pair with an error in either game, and calls it for A whenever \"[[A]]\" appears")
        blocks += _upstream_block(model, "FastChat's show_result", s["win_rate_adjusted"], s.get("fastchat_show_result"),
                                  reasons)
    return blocks


def _alignbench_blocks(scores: dict) -> list[Block]:
    rows = [
        [
            model,
            fmt(s["overall"]),
            fmt_ci(s["ci95"]["overall"]),
            fmt(s["reasoning"]),
            fmt(s["language"]),
            f"{s['n_scored']}/{s['n_items']}",
            str(s["judge_calls_failed"]),
        ]
        for model, s in sorted(scores.items(), key=lambda kv: -(kv[1]["overall"] or 0))
    ]
    blocks: list[Block] = [
        ("h2", "AlignBench v1.1 (1 to 10)"),
        ("p", "Overall = (reasoning + language) / 2, each the mean of its categories' means (THUDM show_result.py)."),
        ("table", ["model", "overall", "95% CI", "reasoning 中文推理", "language 中文语言", "scored/items", "failed calls"], rows),
    ]
    categories = sorted({c for s in scores.values() for c in s["per_category"]})
    blocks.append(
        ("table", ["model", *categories], [[m, *(fmt(s["per_category"].get(c)) for c in categories)] for m, s in scores.items()])
    )
    dimensions = sorted({d for s in scores.values() for d in s["per_dimension"]})
    blocks.append(
        ("table", ["model", *dimensions], [[m, *(fmt(s["per_dimension"].get(d)) for d in dimensions)] for m, s in scores.items()])
    )
    for model, s in scores.items():
        if s.get("dimension_scores_out_of_range"):
            blocks.append(("p", f"{model}: {s['dimension_scores_out_of_range']} dimension score(s) outside 1..10 were "
                                "left out of the dimension means (the overall 综合得分 of those judgments was valid and counts)."))
        reasons = []
        if s["judge_calls_failed"]:
            reasons.append(f"it averages the {s['judge_calls_failed']} failed judgment(s) into their categories as -1 "
                           "and reads only integer scores in single quotes; here failures are excluded")
        blocks += _upstream_block(model, "THUDM's show_result", s["overall"], s.get("thudm_show_result"), reasons)
        if s["categories_without_score"]:
            blocks.append(("warn", f"{model}: no valid score in {', '.join(s['categories_without_score'])}; "
                                   "reasoning/language average only the categories that have scores."))
    return blocks


def _history_blocks(current: dict, history: list[dict]) -> list[Block]:
    blocks: list[Block] = [("h2", "Comparison with earlier runs in this directory")]
    if len(history) < 2:
        return blocks + [("p", "This is the first finished run here.")]
    columns = [(b, m) for b, per_model in history[-1]["headline"].items() for m in per_model]
    rows = []
    previous_values: dict[tuple, float] = {}
    for entry in history:
        comparable = (
            entry["judge_model"] == current["judge"]["model"]
            and entry["prompt_hashes"] == current["judge"]["prompt_hashes"]
            and entry["subset"] == current["subset"]
        )
        cells = [entry["run_id"], when(entry["finished"]), entry["judge_model"], "yes" if comparable else "no"]
        for column in columns:
            value = entry["headline"].get(column[0], {}).get(column[1])
            before = previous_values.get(column)
            delta = f" ({value - before:+.2f})" if value is not None and before is not None else ""
            cells.append(fmt(value) + delta)
            if value is not None:
                previous_values[column] = value
        rows.append(cells)
    headers = ["run", "finished", "judge", "same judge, prompts, questions", *(f"{TITLES[b]}: {m}" for b, m in columns)]
    return blocks + [
        ("p", "Headline per benchmark (MT-Bench and AlignBench overall, pairwise adjusted win rate); "
              "in brackets the change from the run above. Runs with another judge, other prompts or "
              "another question subset are not comparable."),
        ("table", headers, rows),
    ]


def _failure_blocks(summary: dict) -> list[Block]:
    counts = summary["counts"]
    blocks: list[Block] = [
        ("h2", "Judge calls and failures"),
        ("p", f"{counts['judge_calls']} judge calls for {counts['judgments']} judgments "
              f"({counts['from_cache']} judgments entirely from the cache; {counts['api_calls']} requests sent "
              f"by the invocation that finished the run, {counts['api_retries']} of them retried after a rate "
              f"limit or server error); {counts['parse_retries']} unparseable "
              f"judgments were retried; {counts['judgments_failed']} judgments failed for good and are excluded "
              f"from every score (never counted as 0 or -1)."
              + (f" {counts['cache_damaged']} damaged cache file(s) were requested again." if counts.get("cache_damaged")
                 else "")),
    ]
    if counts["failed_by_reason"]:
        blocks.append(("table", ["failure", "judgments"], [[k, str(v)] for k, v in counts["failed_by_reason"].items()]))
    for failure in summary["failures"]:
        blocks.append(
            ("pre", f"{failure['benchmark']} {failure['model']} q{failure['question_id']} turn {failure['turn']}"
                    f"{' game ' + str(failure['game']) if failure['game'] else ''}: {failure['error']}\n"
                    f"judgment: {failure['judgment'][:300]!r}")
        )
    return blocks


def _training_data_blocks(training_data: dict | None) -> list[Block]:
    """What the judged model's data card says about contamination with the benchmarks."""
    if not training_data:
        return []
    check = training_data.get("decontamination")
    if not check:
        return [("warn", f"The training data was not checked for contamination with the benchmarks "
                         f"({training_data['data_card']} has no decontamination record): benchmark questions in "
                         "the training data would inflate these scores.")]
    action = {"drop": "matching rows were dropped", "report": "matching rows were only reported, not dropped"}
    rows = [[benchmark, str(check.get("flagged", {}).get(benchmark, 0)), str(check.get("dropped", {}).get(benchmark, 0))]
            for benchmark in check["checked_against"]]
    return [
        ("p", f"Training data checked for contamination against {', '.join(check['checked_against'])} "
              f"({action.get(check['action'], check['action'])}"
              + (f"; {check['rows_checked']} rows checked" if "rows_checked" in check else "")
              + f"; {training_data['data_card']}):"),
        ("table", ["benchmark", "rows flagged", "rows dropped"], rows),
    ]


def report_blocks(summary: dict, history: list[dict], charts: list[tuple[str, str]]) -> list[Block]:
    """Pure: the report's content, rendered to Markdown and HTML alike."""
    judge = summary["judge"]
    blocks: list[Block] = [("h1", f"Judge report: run {summary['run_id']}")]
    if summary.get("warning"):
        blocks.append(("warn", summary["warning"]))
    if summary.get("subset"):
        subset = summary["subset"]
        parts = []
        if subset.get("question_ids"):
            parts.append(f"question ids {subset['question_ids']}")
        if subset.get("questions_per_category"):
            parts.append(f"the first {subset['questions_per_category']} question(s) of each category")
        blocks.append(("warn", f"Question subset ({'; '.join(parts)}): not comparable with full-benchmark scores."))
    blocks.append(
        ("p", f"Judge {judge['model']} at {judge['base_url'] or 'n/a'}; finished {when(summary['finished'])}."
              + (f" Source: {summary['source']}." if summary.get("source") else "")
              + (f" Note: {summary['note']}." if summary.get("note") else ""))
    )
    used = [url for url in judge.get("base_urls_used") or [] if url]
    if len(set(used)) > 1:
        blocks.append(("p", f"The run was resumed and reached the judge at: {', '.join(used)} (in that order)."))
    blocks.append(("table", ["judge prompt", "sha256 (16 hex)"], [[k, v] for k, v in judge["prompt_hashes"].items()]))
    blocks += _training_data_blocks(summary.get("training_data"))
    benchmark_blocks = {MT_BENCH: _mt_bench_blocks, MT_BENCH_PAIR: _pairwise_blocks, ALIGNBENCH: _alignbench_blocks}
    for benchmark, scores in summary["benchmarks"].items():
        blocks += benchmark_blocks[benchmark](scores)
    for file_name, caption in charts:
        blocks.append(("img", file_name, caption))
    return blocks + _failure_blocks(summary) + _history_blocks(summary, history)


def render_markdown(blocks: list[Block]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            out.append(f"# {block[1]}")
        elif kind == "h2":
            out.append(f"## {block[1]}")
        elif kind == "p":
            out.append(block[1])
        elif kind == "warn":
            out.append(f"> **Warning:** {block[1]}")
        elif kind == "pre":
            out.append("```\n" + block[1].replace("```", "`\u200b``") + "\n```")
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})\n\n{block[2]}")
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
            lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


HTML_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}"
    ".warn{background:#fff3cd;border:1px solid #e0c060;padding:.6em}pre{background:#f4f4f4;padding:.5em;white-space:pre-wrap}"
)


def render_html(blocks: list[Block], title: str) -> str:
    esc = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
           f"<style>{HTML_STYLE}</style></head><body>"]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "p", "pre"):
            out.append(f"<{kind}>{esc(block[1])}</{kind}>")
        elif kind == "warn":
            out.append(f"<p class='warn'><strong>Warning:</strong> {esc(block[1])}</p>")
        elif kind == "img":
            out.append(f"<figure><img src='{esc(block[1])}' alt='{esc(block[2])}'><figcaption>{esc(block[2])}</figcaption></figure>")
        elif kind == "table":
            head = "".join(f"<th>{esc(str(h))}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in block[2])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "\n".join(out) + "\n</body></html>\n"


def _charts(out_dir: Path, summary: dict, previous: dict | None) -> list[tuple[str, str]]:
    charts = []
    for benchmark in (MT_BENCH, ALIGNBENCH):
        scores = summary["benchmarks"].get(benchmark)
        if not scores:
            continue
        current = {model: s["per_category"] for model, s in scores.items() if s["per_category"]}
        if not current:  # no valid score at all: nothing to draw (the tables say so)
            continue
        before = None
        if previous and benchmark in previous["benchmarks"]:
            before = {model: s["per_category"] for model, s in previous["benchmarks"][benchmark].items()}
        file_name = f"radar_{benchmark}.png"
        caption = radar_chart(out_dir / file_name, TITLES[benchmark], current, before,
                              previous_label=f"run {previous['run_id']}" if previous else "")
        charts.append((file_name, caption))
    return charts


def write_report(out_dir: str | Path, *, rebuild: bool = False) -> Path:
    """Write summary.json, report.md, report.html and radar PNGs of DIR; returns report.md.
    `rebuild` recomputes every run's summary from its judgments (else only missing ones)."""
    out_dir = Path(out_dir)
    summaries = run_summaries(list_runs(out_dir), rebuild)
    if not summaries:
        raise NoFinishedRun(f"{out_dir}: no finished judge run (runs/*/run.json with 'finished') to report on")
    latest, previous = summaries[-1], (summaries[-2] if len(summaries) > 1 else None)
    history = [history_entry(summary) for summary in summaries]
    write_json(out_dir / "summary.json", {**latest, "history": history})
    blocks = report_blocks(latest, history, _charts(out_dir, latest, previous))
    report = out_dir / "report.md"
    report.write_text(render_markdown(blocks), encoding="utf-8")
    (out_dir / "report.html").write_text(render_html(blocks, f"Judge report {latest['run_id']}"), encoding="utf-8")
    return report
