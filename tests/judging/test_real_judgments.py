"""Real GPT-4 judgments replayed: the scripted judge's server answers each of our exact prompts
with the judgment GPT-4 wrote for that prompt in a published FastChat run (real/README.md), and
the per-model figures must equal what FastChat's show_result.py prints for those files,
computed here by restating its averaging (pandas' groupby mean; its pairwise win/loss/tie rule)."""

import json
from collections import defaultdict

from align.judging.__main__ import main
from align.judging.aggregate import summarize_pairwise
from align.judging.config import JudgeConfig
from align.judging.judgments import JudgeRequest, judge_answers
from judging_support import REAL, REAL_PAIR as PAIR, REAL_SINGLE as SINGLE

QUESTIONS = (81, 91, 101, 111, 121, 124, 125, 131, 141, 151, 158)


def fastchat_single(rows, model):
    """show_result.py --mode single: drop score -1, mean per model (and per turn)."""
    scores = [(r["turn"], r["score"]) for r in rows if r["model"] == model and r["score"] != -1]
    mean = lambda values: round(sum(values) / len(values), 4)  # noqa: E731
    return {"overall": mean([s for _, s in scores]), "turn_1": mean([s for t, s in scores if t == 1]),
            "turn_2": mean([s for t, s in scores if t == 2])}


def fastchat_pairwise(rows, model):
    """show_result.py --mode pairwise-baseline: drop rows with an error; tie if g1 is a tie or the games differ."""
    win = loss = tie = 0
    for r in rows:
        if "error" in (r["g1_winner"], r["g2_winner"]):
            continue
        if r["g1_winner"] == "tie" or r["g1_winner"] != r["g2_winner"]:
            tie += 1
        elif r[r["g1_winner"]] == model:
            win += 1
        else:
            loss += 1
    return {"win": win, "loss": loss, "tie": tie, "win_rate_adjusted": round((win + tie / 2) / (win + loss + tie), 4)}


def judge(scripted_judge, **values):
    return JudgeConfig.from_mapping({"base_url": scripted_judge.base_url, "model": "gpt-4", "concurrency": 4,
                                     **values}, env={})


def test_single_grading_of_real_answers_equals_fastchat(tmp_path, scripted_judge):
    models = ("mistral-orpo-capybara", "mistral-orpo-mix")
    request = JudgeRequest(mt_bench_answers=REAL / "answers", models=models, question_ids=QUESTIONS)
    report = judge_answers(tmp_path / "judge", request, judge(scripted_judge))
    summary = json.loads((tmp_path / "judge" / "summary.json").read_text())
    rows = [json.loads(line) for line in next((tmp_path / "judge" / "runs").glob("*/judgments.jsonl")).read_text().splitlines()]
    assert {row["judge_prompt"] for row in rows} == {"single-v1", "single-v1-multi-turn", "single-math-v1",
                                                     "single-math-v1-multi-turn"}
    assert all(row["error"] is None and row["attempts"] == 1 for row in rows)  # every prompt had its judgment
    for model in models:
        ours = summary["benchmarks"]["mt_bench"][model]
        expected = fastchat_single(SINGLE, model)
        assert {key: ours[key] for key in expected} == expected
        assert ours["fastchat_show_result"] == expected["overall"] and ours["n_scored"] == 22
    assert "FastChat's show_result would print" not in report.read_text()  # nothing differs, nothing to say


def test_pairwise_of_real_answers_equals_fastchat(tmp_path, scripted_judge):
    request = JudgeRequest(mt_bench_answers=REAL / "answers", mode="pairwise", baseline="phi-3-dpo",
                           models=("phi-3",), question_ids=QUESTIONS)
    # FastChat's run judged turn 1 only; our turn-2 prompts have no recording (the scripted judge calls
    # them ties), so FastChat's figure is compared with the summary of the turn-1 rows.
    report = judge_answers(tmp_path / "judge", request, judge(scripted_judge, parse_retries=0))
    summary = json.loads((tmp_path / "judge" / "summary.json").read_text())
    rows = [json.loads(line) for line in next((tmp_path / "judge" / "runs").glob("*/judgments.jsonl")).read_text().splitlines()]
    turn_1 = [row for row in rows if row["turn"] == 1]
    phi3 = summary["benchmarks"]["mt_bench_pair"]["phi-3"]
    expected = fastchat_pairwise(PAIR, "phi-3")
    first_turn = summarize_pairwise(turn_1)["phi-3"]
    assert {key: first_turn[key] for key in expected} == expected
    assert first_turn["pairs_without_verdict"] == 2  # q124 (one game $ERROR$) and q125 (both)
    assert first_turn["fastchat_show_result"] == expected["win_rate_adjusted"]
    assert phi3["pairs_without_verdict"] == 2 and "no verdict" in report.read_text()


def test_import_fastchat_real_files_states_fastchats_figure_beside_ours(tmp_path):
    out = tmp_path / "imported"
    assert main(["import-fastchat", str(REAL / "gpt-4_single.jsonl"), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    orpo = summary["benchmarks"]["mt_bench"]["mistral-orpo"]
    # two runs of gen_judgment.py: 22 items judged twice, one judgment -1
    assert (orpo["n_items"], orpo["items_with_several_rows"], orpo["judge_calls_failed"]) == (22, 22, 1)
    assert orpo["fastchat_show_result"] == fastchat_single(SINGLE, "mistral-orpo")["overall"]
    by_item = defaultdict(list)
    for r in SINGLE:
        if r["model"] == "mistral-orpo" and r["score"] != -1:
            by_item[(r["question_id"], r["turn"])].append(r["score"])
    medians = [sum(v) / len(v) for v in by_item.values()]  # the median of two is their mean
    assert orpo["overall"] == round(sum(medians) / len(medians), 4) != orpo["fastchat_show_result"]
    text = (out / "report.md").read_text()
    assert f"mistral-orpo: FastChat's show_result would print {orpo['fastchat_show_result']:.4f}" in text
    assert "22 item(s) have several rows" in text
    for model in ("mistral-orpo-capybara", "mistral-orpo-mix"):
        assert summary["benchmarks"]["mt_bench"][model]["overall"] == fastchat_single(SINGLE, model)["overall"]

    pairs = tmp_path / "pairs"
    assert main(["import-fastchat", str(REAL / "gpt-4_pair.jsonl"), "--out", str(pairs)]) == 0
    summary = json.loads((pairs / "summary.json").read_text())
    phi3 = summary["benchmarks"]["mt_bench_pair"]["phi-3"]
    expected = fastchat_pairwise(PAIR, "phi-3")
    assert {key: phi3[key] for key in expected} == expected
    assert phi3["baseline"] == "phi-3-dpo" and phi3["pairs_without_verdict"] == 2
    assert summary["counts"]["strict_parser_disagrees"] == 0 and summary["counts"]["pairing_baseline"] == 1
