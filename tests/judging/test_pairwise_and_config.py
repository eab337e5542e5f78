"""Pairwise suggestions (scripted judge over HTTP), judge configuration, answer-file errors."""

import json

import pytest

from align.judging.__main__ import main
from align.judging.benchmarks import DataError, check_complete, load_fastchat_answers
from align.judging.config import JudgeConfig, JudgeConfigError
from align.judging.pairwise import PairVerdict, judge_pair, judge_pairs, prompt_as_question

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


def test_multi_turn_prompts_become_a_transcript():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}]
    assert prompt_as_question(messages) == "System: S\n\nUser: U1\n\nAssistant: A1\n\nUser: U2"
    assert prompt_as_question(PROMPT) == PROMPT[0]["content"]


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
