"""Pairwise suggestions (scripted judge over HTTP), judge configuration, answer-file errors."""

import json

import pytest

from align.judging.__main__ import main
from align.data.benchmarks import DataError, check_complete, load_fastchat_answers, load_mt_bench
from align.judging.config import JudgeConfig, JudgeConfigError
from align.judging.pairwise import (
    PairVerdict,
    PairwiseJudgeError,
    combine_votes,
    judge_pair,
    judge_pairs,
    pair_prompts,
    prompt_as_question,
)
from align.judging.prompts import mt_bench_pair_messages
from judging_support import FASTCHAT


PROMPT = [{"role": "user", "content": "Explain DPO in one line."}]


def config(scripted_judge, **values):
    return JudgeConfig.from_mapping({"base_url": scripted_judge.base_url, "model": "scripted-judge", **values}, env={})


def test_judge_pair_both_orders(scripted_judge):
    better = judge_pair(PROMPT, "good SCRIPTED_SCORE=8", "weak SCRIPTED_SCORE=3", judge=config(scripted_judge))
    assert isinstance(better, PairVerdict)
    assert (better.winner, better.confidence, better.judge_model, len(better.raw)) == ("a", 1.0, "scripted-judge", 2)
    worse = judge_pair(PROMPT, "weak SCRIPTED_SCORE=3", "good SCRIPTED_SCORE=8", judge=config(scripted_judge, repeats=2))
    assert (worse.winner, worse.confidence, worse.votes) == ("b", 1.0, {"b": 4})
    # position bias: A wins in both orders -> the orders disagree -> tie, and no vote backs it
    biased = judge_pair(PROMPT, "SCRIPTED_BIAS_A x", "SCRIPTED_BIAS_A y", judge=config(scripted_judge))
    assert (biased.winner, biased.confidence, biased.votes) == ("tie", 0.0, {"a": 1, "b": 1})


def test_judge_pairs_keeps_order_and_the_command_prints_json(scripted_judge, tmp_path, capsys, monkeypatch):
    items = [(PROMPT, f"a SCRIPTED_SCORE={a}", f"b SCRIPTED_SCORE={b}") for a, b in ((9, 2), (2, 9), (5, 5))]
    assert [v.winner for v in judge_pairs(items, judge=config(scripted_judge, concurrency=3))] == ["a", "b", "tie"]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p, "answer_a": a, "answer_b": b}) + "\n" for p, a, b in items))
    monkeypatch.setenv("JUDGE_BASE_URL", scripted_judge.base_url)
    monkeypatch.setenv("JUDGE_MODEL", "scripted-judge")
    assert main(["pairwise", "--pairs", str(pairs)]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["winner"] for p in printed] == ["a", "b", "tie"]


def test_both_orders_are_needed_for_a_verdict(scripted_judge):
    assert combine_votes("a", "a") == "a" and combine_votes("a", "b") == "tie" and combine_votes("tie", "a") == "tie"
    assert combine_votes("a", None) is None and combine_votes(None, "b") is None  # not a win from one order
    # the judge gives no verdict whenever the first answer is shown as A: the AB order never decides
    with pytest.raises(PairwiseJudgeError, match="no parseable verdict in order AB"):
        judge_pair(PROMPT, "SCRIPTED_MUTE_AS_A SCRIPTED_SCORE=9", "SCRIPTED_SCORE=2", judge=config(scripted_judge))
    results = judge_pairs([(PROMPT, "SCRIPTED_MUTE_AS_A x", "y"), (PROMPT, "SCRIPTED_SCORE=9", "SCRIPTED_SCORE=2")],
                          judge=config(scripted_judge))
    assert isinstance(results[0], PairwiseJudgeError) and results[1].winner == "a"  # counted in place


@pytest.mark.parametrize("case", [c for c in FASTCHAT["prompt_cases"] if c["kind"] == "pair"],
                         ids=lambda c: f"{c['template']}-q{c['question_id']}-t{c['turn']}")
def test_pair_prompts_are_fastchats_own(case):
    """One user turn: byte for byte what FastChat's run_judge_pair sent (golden). Two turns: the
    multi-turn template filled as FastChat fills it, both assistants sharing the first answer."""
    bench = load_mt_bench()
    question = bench.question(case["question_id"])
    reference = bench.references[question["question_id"]] if case["template"].startswith("pair-math") else None
    if case["turn"] == 1:
        name, first, swapped = pair_prompts([{"role": "user", "content": question["turns"][0]}], case["answer_a"][0],
                                            case["answer_b"][0], reference[0] if reference else None)
        assert (name, first) == (case["template"], case["messages"])
    else:
        shared = case["answer_a"][0]
        prompt = [{"role": "user", "content": question["turns"][0]}, {"role": "assistant", "content": shared},
                  {"role": "user", "content": question["turns"][1]}]
        name, first, swapped = pair_prompts(prompt, case["answer_a"][1], case["answer_b"][1], reference)
        assert name == case["template"]
        expected = mt_bench_pair_messages(bench, question, [shared, case["answer_a"][1]], [shared, case["answer_b"][1]], 2)
        assert (name, first) == expected
    assert swapped[-1]["content"] != first[-1]["content"]  # B first in the other order


def test_other_conversations_become_a_transcript_in_pair_v2():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}]
    assert prompt_as_question(messages) == "System: S\n\nUser: U1\n\nAssistant: A1\n\nUser: U2"
    assert prompt_as_question(PROMPT) == PROMPT[0]["content"]
    name, first, _ = pair_prompts(messages, "a", "b")
    assert name == "pair-v2" and "[User Question]\nSystem: S\n\nUser: U1" in first[-1]["content"]
    with pytest.raises(ValueError, match="reference answer for each user turn"):
        pair_prompts(messages[1:], "a", "b", reference="only one")


def test_config_from_environment_and_explicit_values():
    env = {"JUDGE_BASE_URL": "http://judge:8000/v1/", "JUDGE_MODEL": "qwen", "OPENAI_API_KEY": "sk-secret"}
    judge = JudgeConfig.from_mapping({}, env=env)
    assert (judge.base_url, judge.model, judge.api_key) == ("http://judge:8000/v1", "qwen", "sk-secret")
    assert "api_key" not in judge.public() and "sk-secret" not in repr(judge)
    assert JudgeConfig.from_mapping({"model": "gpt-4"}, env=env).model == "gpt-4"
    assert JudgeConfig.from_mapping({"model": "gpt-4"}, env={"OPENAI_API_KEY": "k"}).base_url == "https://api.openai.com/v1"
    with pytest.raises(JudgeConfigError, match="JUDGE_MODEL"):
        JudgeConfig.from_mapping({"base_url": "http://x/v1"}, env={})
    with pytest.raises(JudgeConfigError, match="JUDGE_BASE_URL"):
        JudgeConfig.from_mapping({"model": "m"}, env={})
    with pytest.raises(JudgeConfigError, match="unknown key"):
        JudgeConfig.from_mapping({"modle": "m"}, env=env)
    with pytest.raises(JudgeConfigError, match="repeats"):
        JudgeConfig.from_mapping({"repeats": 0}, env=env)
    # the backoff keys have no flag but are checked as the flagged ones are (a list was a TypeError mid-run)
    with pytest.raises(JudgeConfigError, match=r"judge config: backoff_max_s must be a number, got \[60\]"):
        JudgeConfig.from_mapping({"backoff_max_s": [60]}, env=env)
    with pytest.raises(JudgeConfigError, match="judge config: backoff_base_s must be >= 0, got -1"):
        JudgeConfig.from_mapping({"backoff_base_s": -1}, env=env)


def test_answer_files_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"question_id": 81, "choices": [{"index": 0, "turns": ["a", "b"]}]}\n{"question_id": 82}\n')
    with pytest.raises(DataError, match=r"m.jsonl:2: missing field 'choices'"):
        load_fastchat_answers(path)
    path.write_text('{"question_id": 81, "choices": [{"index": 0, "turns": ["a", "b"]}]}\nnot json\n')
    with pytest.raises(DataError, match=r"m.jsonl:2: not valid JSON"):
        load_fastchat_answers(path)
    path.write_text('{"question_id": 81, "choices": [{"index": 0, "turns": ["a", 3]}]}\n')
    with pytest.raises(DataError, match=r"m.jsonl:1: field 'choices\[0\].turns' must hold strings"):
        load_fastchat_answers(path)
    with pytest.raises(DataError, match=r"m.jsonl: no answer for 2 question\(s\): 82, 83"):
        check_complete({81: ["a", "b"]}, [81, 82, 83], path)
