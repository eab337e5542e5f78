"""End to end through real HTTP: answers -> judge calls -> rows -> summary.json -> report.

The judge here is the SCRIPTED judge (tests/judging/scripted_judge.py): its opinions are read
from markers in the answers, so every number below is computed by hand from those markers.
The client (openai SDK over HTTP), backoff, cache, parsing, aggregation and report are real.
"""

import json
from pathlib import Path

import pytest

from align.judging.config import JudgeConfig
from align.judging.judgments import JudgeRequest, build_tasks, judge_answers
from align.judging.runs import list_runs
from judging_support import needs_alignbench, write_fastchat_answers

FIRST_PER_CATEGORY = [81, 91, 101, 111, 121, 131, 141, 151]  # writing, roleplay, reasoning, math, coding, ...
ALPHA = {81: (8, 6), 91: (7, 7), 101: (3, 5), 111: (10, 2), 121: (6, 6), 131: (9, 8), 141: (4, 4), 151: (5, 9)}


def scored(turns, who="alpha"):
    return [f"{who}'s answer one. SCRIPTED_SCORE={turns[0]}", f"{who}'s answer two. SCRIPTED_SCORE={turns[1]}"]


def beta_answers():
    answers = {qid: scored((5, 5), "beta") for qid in FIRST_PER_CATEGORY}
    answers[81] = ["fine SCRIPTED_SCORE=5", "first call unparseable SCRIPTED_FLAKY SCRIPTED_SCORE=9"]
    answers[91] = ["fine SCRIPTED_SCORE=5", "never parseable SCRIPTED_GARBAGE"]
    answers[101] = ["fine SCRIPTED_SCORE=5", "first call rate-limited SCRIPTED_429 SCRIPTED_SCORE=4"]
    return answers


def judge_config(scripted_judge, **overrides):
    values = {"base_url": scripted_judge.base_url, "model": "scripted-judge", "concurrency": 4, "backoff_base_s": 0.01}
    return JudgeConfig.from_mapping({**values, **overrides}, env={})


@pytest.fixture
def answers_dir(tmp_path):
    directory = tmp_path / "answers"
    write_fastchat_answers(directory / "alpha.jsonl", {qid: scored(s) for qid, s in ALPHA.items()})
    write_fastchat_answers(directory / "beta.jsonl", beta_answers())
    return directory


def test_single_grading_scores_failures_retries_cache_and_history(tmp_path, answers_dir, scripted_judge):
    out = tmp_path / "judge"
    request = JudgeRequest(mt_bench_answers=answers_dir, questions_per_category=1)
    before = scripted_judge.requests()
    report = judge_answers(out, request, judge_config(scripted_judge))
    # 32 judgments; +1 flaky retry, +2 garbage retries, +1 request answered 429 then retried
    assert scripted_judge.requests() - before == 32 + 1 + 2 + 1

    summary = json.loads((out / "summary.json").read_text())
    alpha = summary["benchmarks"]["mt_bench"]["alpha"]
    assert (alpha["turn_1"], alpha["turn_2"], alpha["overall"]) == (6.5, 5.875, 6.1875)  # 52/8, 47/8, 99/16
    assert alpha["per_category"] == {"coding": 6.0, "extraction": 8.5, "humanities": 7.0, "math": 6.0,
                                     "reasoning": 4.0, "roleplay": 7.0, "stem": 4.0, "writing": 7.0}
    lo, hi = alpha["ci95"]["overall"]
    assert lo <= 6.1875 <= hi

    beta = summary["benchmarks"]["mt_bench"]["beta"]
    # turn 2 without q91 (unparseable 3 times): (9 + 4 + 5 * 5) / 7; overall (8 * 5 + 38) / 15
    assert beta["turn_2"] == round(38 / 7, 4) and beta["overall"] == 5.2
    assert (beta["n_items"], beta["n_scored"], beta["judge_calls_failed"], beta["parse_retries"]) == (16, 15, 1, 1)
    # FastChat makes one call per judgment and reads the "[1]" of the first, unparseable reply as a rating
    # (q81 turn 2, retried here to 9, and q91 turn 2): (8 * 5 + 1 + 1 + 4 + 5 * 5) / 16
    assert beta["fastchat_show_result"] == 4.4375 and alpha["fastchat_show_result"] == alpha["overall"]
    assert "beta: FastChat's show_result would print 4.4375 where this report says 5.2000" in report.read_text()
    counts = summary["counts"]
    assert (counts["judgments_failed"], counts["api_retries"]) == (1, 1)
    assert summary["failures"][0]["question_id"] == 91 and "unparseable after 3 attempt(s)" in summary["failures"][0]["error"]
    assert summary["judge"]["model"] == "scripted-judge"
    assert set(summary["judge"]["prompt_hashes"]) == {"single-v1", "single-v1-multi-turn", "single-math-v1",
                                                      "single-math-v1-multi-turn"}

    rows = [json.loads(line) for line in (list_runs(out)[0].judgments_path).read_text().splitlines()]
    garbage = next(r for r in rows if r["model"] == "beta" and r["question_id"] == 91 and r["turn"] == 2)
    assert garbage["score"] is None and len(garbage["failed_attempts"]) == 3
    assert "[1]" in garbage["failed_attempts"][0]["judgment"]
    assert {"benchmark", "question_id", "turn", "model", "judge_model", "prompt_hash", "judgment", "score",
            "error"} <= set(garbage)

    # A re-run costs nothing: every call is in the cache (failed parses included), and the report
    # now compares two runs.
    before = scripted_judge.requests()
    judge_answers(out, request, judge_config(scripted_judge))
    assert scripted_judge.requests() == before
    summary = json.loads((out / "summary.json").read_text())
    assert [h["headline"]["mt_bench"]["alpha"] for h in summary["history"]] == [6.1875, 6.1875]
    text = report.read_text()
    assert "Comparison with earlier runs" in text and "6.19 (+0.00)" in text
    assert "radar_mt_bench.png" in text and (out / "radar_mt_bench.png").stat().st_size > 10_000


def test_repeats_make_separate_calls_and_take_the_median(tmp_path, answers_dir, scripted_judge):
    before = scripted_judge.requests()
    request = JudgeRequest(mt_bench_answers=answers_dir / "alpha.jsonl", question_ids=(81, 111))
    judge_answers(tmp_path / "judge", request, judge_config(scripted_judge, repeats=3))
    assert scripted_judge.requests() - before == 4 * 3
    summary = json.loads((tmp_path / "judge" / "summary.json").read_text())
    assert summary["benchmarks"]["mt_bench"]["alpha"]["overall"] == (8 + 6 + 10 + 2) / 4
    assert summary["subset"] == {"question_ids": [81, 111]}


def test_pairwise_both_orders_against_a_baseline(tmp_path, scripted_judge):
    answers = tmp_path / "answers"
    write_fastchat_answers(answers / "alpha.jsonl", {qid: scored(s) for qid, s in ALPHA.items()})
    write_fastchat_answers(answers / "base.jsonl", {qid: scored((5, 5), "base") for qid in FIRST_PER_CATEGORY})
    write_fastchat_answers(answers / "biased.jsonl",
                           {qid: ["SCRIPTED_BIAS_A", "SCRIPTED_BIAS_A"] for qid in FIRST_PER_CATEGORY})
    request = JudgeRequest(mt_bench_answers=answers, mode="pairwise", baseline="base", questions_per_category=1)
    before = scripted_judge.requests()
    judge_answers(tmp_path / "judge", request, judge_config(scripted_judge))
    assert scripted_judge.requests() - before == 2 * 16 * 2  # 2 models x 16 items x both orders
    pair = json.loads((tmp_path / "judge" / "summary.json").read_text())["benchmarks"]["mt_bench_pair"]
    # alpha vs 5s: turn 1 wins 8,7,10,6,9 / losses 3,4 / tie 5; turn 2 wins 6,7,6,8,9 / losses 2,4 / tie 5
    assert (pair["alpha"]["win"], pair["alpha"]["loss"], pair["alpha"]["tie"]) == (10, 4, 2)
    assert (pair["alpha"]["win_rate"], pair["alpha"]["win_rate_adjusted"]) == (0.625, 0.6875)
    # a judge that always says [[A]] wins game 1 and loses game 2: every pair inconsistent -> tie
    assert (pair["biased"]["tie"], pair["biased"]["inconsistent"], pair["biased"]["win_rate_adjusted"]) == (16, 16, 0.5)


def test_pairwise_all_judges_every_pair_in_both_orders(tmp_path, scripted_judge):
    answers = tmp_path / "answers"
    for name, score in (("a", 8), ("b", 5), ("c", 2)):
        write_fastchat_answers(answers / f"{name}.jsonl", {qid: scored((score, score), name) for qid in (81, 82)})
    request = JudgeRequest(mt_bench_answers=answers, mode="pairwise-all", question_ids=(81, 82))
    before = scripted_judge.requests()
    report = judge_answers(tmp_path / "judge", request, judge_config(scripted_judge))
    assert scripted_judge.requests() - before == 3 * 4 * 2  # pairs (a,b) (a,c) (b,c) x 4 items x both orders
    pair = json.loads((tmp_path / "judge" / "summary.json").read_text())["benchmarks"]["mt_bench_pair"]
    # FastChat's pairwise-all: a pair's outcome counts for both of its models
    assert {m: (s["win"], s["loss"], s["tie"]) for m, s in pair.items()} == {"a": (8, 0, 0), "b": (4, 4, 0), "c": (0, 8, 0)}
    assert [pair[m]["win_rate_adjusted"] for m in "abc"] == [1.0, 0.5, 0.0]
    assert all(pair[m]["fastchat_show_result"] == pair[m]["win_rate_adjusted"] for m in "abc")
    assert "MT-Bench pairwise, every pair of models" in report.read_text()


SHARED_ANSWERS = Path(__file__).resolve().parents[3] / "shared" / "data" / "mt_bench" / "model_answer"


@pytest.mark.skipif(not SHARED_ANSWERS.is_dir(), reason=f"{SHARED_ANSWERS} not found (the team's shared data)")
def test_the_31_published_models_need_only_a_judge_endpoint():
    judge = JudgeConfig(base_url="http://127.0.0.1:1/v1", model="gpt-4")  # never called here
    tasks, provenance = build_tasks(JudgeRequest(mt_bench_answers=SHARED_ANSWERS), judge)
    assert len(provenance["answers"]["mt_bench"]) == 31 and len(tasks) == 31 * 80 * 2
    pairwise, _ = build_tasks(JudgeRequest(mt_bench_answers=SHARED_ANSWERS, mode="pairwise"), judge)
    assert len(pairwise) == 30 * 80 * 2 * 2  # every model but gpt-3.5-turbo, both orders


@needs_alignbench
def test_alignbench_categories_dimensions_reasoning_language(tmp_path, scripted_judge):
    from align.data.benchmarks import load_alignbench
    from align.judging.tasks import select_questions

    questions = select_questions(load_alignbench().questions, 1)
    score = {"数学计算": 4, "逻辑推理": 6, "基本任务": 7, "中文理解": 7, "综合问答": 8, "文本写作": 5, "角色扮演": 9, "专业能力": 6}
    path = tmp_path / "answers" / "alpha.jsonl"
    path.parent.mkdir()
    with path.open("w", encoding="utf-8") as handle:
        for q in questions:
            handle.write(json.dumps({"question_id": q["question_id"], "answer": f"回答 SCRIPTED_SCORE={score[q['category']]}"},
                                    ensure_ascii=False) + "\n")
    judge_answers(tmp_path / "judge", JudgeRequest(alignbench_answers=path, questions_per_category=1),
                  judge_config(scripted_judge))
    s = json.loads((tmp_path / "judge" / "summary.json").read_text())["benchmarks"]["alignbench"]["alpha"]
    # reasoning (4 + 6) / 2 = 5; language (7 + 7 + 8 + 5 + 9 + 6) / 6 = 7; overall 6
    assert (s["reasoning"], s["language"], s["overall"]) == (5.0, 7.0, 6.0)
    assert s["per_dimension"]["事实正确性"] == round(sum(score.values()) / 8, 4)  # every category scores it
    assert s["dimension_scores_missing"] == 0 and s["n_scored"] == 8
    # THUDM's regex finds no `'key': int` in this judge's double-quoted decimal dict: -1 everywhere
    assert s["thudm_show_result"] == -1.0
    assert "alpha: THUDM's show_result would print -1.0000 where this report says 6.0000: it reads only" in \
        (tmp_path / "judge" / "report.md").read_text()
