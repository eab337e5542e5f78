"""Benchmark contamination: planted, edited MT-Bench and AlignBench questions and reference answers are found
among real conversations (Anthropic HH, MT-Bench's model answers); the clean rows' false-alarm rate is measured."""

import json
import random

import pytest

from align.data.contamination import (
    HAS_CJK,
    ContaminationIndex,
    alignbench_texts,
    file_texts,
    main,
    mt_bench_texts,
    tokens,
)
from align.data.sources import DataError
from align.data.benchmarks import load_mt_bench
from tests.conftest import HH_HARMLESS_TEST, SHARED_DATA

HH = HH_HARMLESS_TEST
MODEL_ANSWERS = SHARED_DATA / "mt_bench" / "model_answer"
ALIGNBENCH = SHARED_DATA / "alignbench"
FALSE_ALARM_BOUND = 0.001  # measured: 0 of 7,272 clean rows (docs/data.md)

needs_shared = pytest.mark.skipif(not HH.is_file(), reason=f"{HH} not found (../shared/data is beside the checkout)")
needs_alignbench = pytest.mark.skipif(
    not (ALIGNBENCH / "data_v1.1_release.jsonl").is_file(), reason=f"AlignBench not found in {ALIGNBENCH}"
)

FULL_WIDTH = str.maketrans({",": "，", ".": "。", "?": "？", "!": "！", ":": "：", ";": "；", "(": "（", ")": "）"})
HALF_WIDTH = str.maketrans({"，": ",", "。": ".", "？": "?", "！": "!", "：": ":", "；": ";", "（": "(", "）": ")"})


def edited(text: str, kind: str) -> str:
    """The edits a copied benchmark question goes through."""
    if kind == "case":
        return text.upper()
    if kind == "whitespace":
        if HAS_CJK.search(text):  # a space after every CJK character
            return "".join(c + " " if HAS_CJK.match(c) else c for c in text)
        return "  \n".join(text.split(" "))
    if kind == "punctuation":
        swapped = text.translate(FULL_WIDTH)
        return (swapped if swapped != text else text.translate(HALF_WIDTH)).replace("'", "’") + "?!"
    if kind == "embedded":
        return f"I found this in my homework and I am stuck.\n\n{text}\n\nPlease explain step by step, thanks!"
    raise ValueError(kind)


EDITS = ("case", "whitespace", "punctuation", "embedded")


def chat(*turns: str) -> dict:
    roles = ("user", "assistant")
    return {"messages": [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]}


@pytest.fixture(scope="module")
def clean_rows(hh_conversations):
    """`(row, own MT-Bench question id or None)`: every HH conversation, and every MT-Bench model answer as the
    reply to an HH question (the answer's own question is not in the row)."""
    rows = [({"messages": conversation}, None) for conversation in hh_conversations]
    rng = random.Random(0)
    for path in sorted(MODEL_ANSWERS.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            answer = json.loads(line)
            for turn in answer["choices"][0]["turns"]:
                question = rng.choice(hh_conversations)[0]["content"]
                rows.append((chat(question, turn), str(answer["question_id"])))
    return rows


@pytest.fixture(scope="module")
def mt_index():
    return ContaminationIndex(mt_bench_texts())


@pytest.fixture(scope="module")
def alignbench_index():
    return ContaminationIndex(alignbench_texts(ALIGNBENCH))


def test_normalisation_ignores_case_whitespace_and_punctuation_full_width_included():
    assert tokens("Ｈｅｌｌｏ，  WORLD！\n\tIt's 2023.") == ("hello", "world", "it", "s", "2023")
    assert tokens("你好，世界。 Klear-46B！") == ("你", "好", "世", "界", "klear", "46b")
    assert tokens("请 解 释：什么是“超新星”？") == tokens("请解释:什么是\"超新星\"?")
    assert tokens("🌾🌾👦") == ("🌾", "🌾", "👦")


@needs_shared
@pytest.mark.parametrize("kind", EDITS)
def test_edited_mt_bench_first_turns_are_found_among_real_conversations(mt_index, hh_conversations, kind):
    questions = load_mt_bench().questions
    rng = random.Random(kind)
    for question in questions:
        context = rng.choice(hh_conversations)
        # the question is the last user turn of a real multi-turn conversation
        row = {"messages": context[:-1] + [{"role": "user", "content": edited(question["turns"][0], kind)},
                                           {"role": "assistant", "content": context[-1]["content"]}]}
        flags = mt_index.scan([(f"messages[{i}]", m["content"]) for i, m in enumerate(row["messages"])])
        assert [(f.question_id, f.part) for f in flags] == [(str(question["question_id"]), "question turn 1")], kind


@needs_shared
def test_pasted_reference_answers_are_found(mt_index, hh_conversations):
    references = load_mt_bench().references
    rng = random.Random(0)
    found = 0
    for question_id, turns in references.items():
        for turn, reference in enumerate(turns):
            if len(tokens(reference)) < 13:
                continue  # short references count only as a whole message; tested below
            reply = edited(reference, "punctuation")
            flags = mt_index.scan([("messages[0]", rng.choice(hh_conversations)[0]["content"]),
                                   ("messages[1]", reply)])
            assert [f.question_id for f in flags] == [str(question_id)]
            assert f"reference turn {turn + 1}" in flags[0].parts
            found += 1
    assert found >= 50


def test_short_follow_up_turns_count_only_with_their_first_turn(mt_index):
    question = load_mt_bench().question(82)  # turn 2: "Take a moment to evaluate and critique your own response."
    follow_up = question["turns"][1]
    assert len(tokens(follow_up)) < 13
    assert mt_index.scan([("messages[0]", "Write a haiku about autumn."), ("messages[2]", follow_up)]) == []
    flags = mt_index.scan([("messages[0]", question["turns"][0]), ("messages[2]", follow_up.lower())])
    assert [(f.question_id, f.part) for f in flags] == [("82", "question turn 1")]


def test_a_short_question_counts_embedded_but_a_very_short_one_only_as_the_whole_message(tmp_path):
    path = tmp_path / "quiz.jsonl"
    path.write_text(json.dumps({"id": "q1", "question": "Who wrote the Odyssey?"}) + "\n"
                    + json.dumps({"id": "q2", "question": "Why?"}) + "\n")
    index = ContaminationIndex(file_texts(path))
    assert [f.question_id for f in index.scan([("m", "Quick one: WHO wrote 'the Odyssey'? I forgot.")])] == ["q1"]
    assert index.scan([("m", "Why? Because I said so.")]) == []
    assert [f.question_id for f in index.scan([("m", "why")])] == ["q2"]


@needs_alignbench
@pytest.mark.parametrize("kind", EDITS)
def test_edited_alignbench_questions_are_found(alignbench_index, hh_conversations, kind):
    questions = [q for q in alignbench_texts(ALIGNBENCH) if q.part == "question" and len(tokens(q.text)) >= 6]
    rng = random.Random(kind)
    missed = []
    for question in rng.sample(questions, 150):
        reply = rng.choice(hh_conversations)[-1]["content"]
        flags = alignbench_index.scan([("messages[0]", edited(question.text, kind)), ("messages[1]", reply)])
        if question.question_id not in {f.question_id for f in flags}:
            missed.append(question.question_id)
    assert missed == []


@needs_alignbench
def test_alignbench_reference_pasted_as_the_reply_is_found(alignbench_index):
    references = [t for t in alignbench_texts(ALIGNBENCH) if t.is_reference and len(tokens(t.text)) >= 13]
    for reference in references[::5]:
        flags = alignbench_index.scan([("messages[0]", "帮我回答一下"), ("messages[1]", edited(reference.text, "punctuation"))])
        assert reference.question_id in {f.question_id for f in flags}


@needs_shared
def test_false_alarm_rate_on_clean_rows_is_below_the_bound(clean_rows, mt_index, request):
    """A false alarm: a flagged HH conversation, or a model answer flagged for another question than its own.
    (A model answer flagged for its own question is no false alarm: it restates the question or reproduces the
    reference answer, and training on it would leak MT-Bench.)"""
    has_alignbench = (ALIGNBENCH / "data_v1.1_release.jsonl").is_file()
    indexes = [mt_index] + ([request.getfixturevalue("alignbench_index")] if has_alignbench else [])
    false_alarms, own = [], 0
    for row, own_question in clean_rows:
        segments = [(f"messages[{i}]", m["content"]) for i, m in enumerate(row["messages"])]
        for index in indexes:
            for flag in index.scan(segments):
                if flag.benchmark == "mt_bench" and flag.question_id == own_question:
                    own += 1
                else:
                    false_alarms.append((own_question, flag))
    rate = len(false_alarms) / len(clean_rows)
    print(f"clean rows {len(clean_rows)}, false alarms {len(false_alarms)} ({rate:.4%}), "
          f"model answers flagged for their own question {own}")
    assert len(clean_rows) > 7000 and rate <= FALSE_ALARM_BOUND, false_alarms[:5]


def test_eval_file_fields_and_errors(tmp_path):
    path = tmp_path / "my_eval.jsonl"
    path.write_text(json.dumps({"question_id": 7, "turns": ["First question here?", "And then?"],
                                "reference": ["Answer one.", "Answer two."]}) + "\n"
                    + json.dumps({"prompt": [{"role": "system", "content": "be nice"},
                                             {"role": "user", "content": "Hello there friend"}]}) + "\n")
    texts = file_texts(path)
    assert [(t.benchmark, t.question_id, t.part) for t in texts] == [
        ("my_eval", "7", "question turn 1"), ("my_eval", "7", "question turn 2"),
        ("my_eval", "7", "reference turn 1"), ("my_eval", "7", "reference turn 2"), ("my_eval", "2", "question turn 1"),
    ]
    path.write_text(json.dumps({"id": 1, "question": "ok?"}) + "\n" + json.dumps({"id": 2, "text": "x"}) + "\n")
    with pytest.raises(DataError, match=r"my_eval.jsonl:2: no question"):
        file_texts(path)
    path.write_text(json.dumps({"id": 1, "question": 5}) + "\n")
    with pytest.raises(DataError, match=r"my_eval.jsonl:1: field 'question' must be"):
        file_texts(path)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_cli_reports_planted_rows_in_chat_and_preference_files(tmp_path, capsys):
    question = load_mt_bench().question(81)["turns"][0]
    chat_file = write_jsonl(tmp_path / "chat.jsonl", [
        chat("What is the capital of France?", "Paris."),
        chat(edited(question, "embedded"), "Aloha!"),
        chat("Tell me a joke.", "No."),
    ])
    report = tmp_path / "out" / "report.json"
    assert main([str(chat_file), "--against", "mt_bench", "--report", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["rows"] == 3 and result["checked_against"] == ["mt_bench"]
    [entry] = result["flagged"]
    assert (entry["row"], entry["benchmark"], entry["question_id"]) == (1, "mt_bench", "81")
    assert entry["location"] == f"{chat_file}:2" and "travel blog post about a recent trip to hawaii" in entry["evidence"]
    assert "mt_bench: 1 rows flagged" in capsys.readouterr().out

    eval_file = write_jsonl(tmp_path / "house_eval.jsonl", [{"id": "h1", "question": "Name three rivers in Peru."}])
    preference = write_jsonl(tmp_path / "pref.jsonl", [
        {"prompt": "name three rivers in peru!", "chosen": "Amazon, Ucayali, Marañón.", "rejected": "No."},
        {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello"}],
         "rejected": [{"role": "assistant", "content": "Go away"}]},
        {"chosen": "\n\nHuman: Hi\n\nAssistant: " + question, "rejected": "\n\nHuman: Hi\n\nAssistant: no"},
    ])
    assert main([str(preference), "--against", "mt_bench", "--against", str(eval_file), "--report", str(report)]) == 0
    result = json.loads(report.read_text())
    assert [(e["row"], e["benchmark"], e["question_id"]) for e in result["flagged"]] == [
        (0, "house_eval", "h1"), (2, "mt_bench", "81")]
    assert result["summary"] == {"mt_bench": {"rows_flagged": 1, "questions_hit": 1},
                                 "house_eval": {"rows_flagged": 1, "questions_hit": 1}}


def test_cli_reads_a_recipe_mixture_and_a_saved_dataset(tmp_path):
    import datasets

    question = load_mt_bench().question(101)["turns"][0]
    saved = tmp_path / "saved"
    datasets.Dataset.from_list([chat("hello", "hi"), chat(question.upper(), "second")]).save_to_disk(str(saved))
    plain = write_jsonl(tmp_path / "plain.jsonl", [chat("a b c", "d")])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"dataset_mixture:\n  - path: {plain}\n  - path: {saved}\n    weight: 0.5\n")
    report = tmp_path / "r.json"
    assert main([str(recipe), "--against", "mt_bench", "--report", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["rows"] == 3  # every row of every source, weights aside
    assert [(e["row"], e["question_id"], e["location"]) for e in result["flagged"]] == [(2, "101", f"{saved}[row 1]")]


def test_cli_names_a_missing_alignbench_and_exits_non_zero(tmp_path, capsys):
    data = write_jsonl(tmp_path / "c.jsonl", [chat("a", "b")])
    code = main([str(data), "--against", "alignbench", "--alignbench-dir", str(tmp_path / "nowhere"),
                 "--report", str(tmp_path / "r.json")])
    assert code == 2 and "AlignBench not found" in capsys.readouterr().err


@needs_shared
def test_the_batched_pre_filter_finds_exactly_what_the_row_by_row_scan_finds(clean_rows, mt_index):
    rows = [[(f"messages[{i}]", tokens(m["content"])) for i, m in enumerate(row["messages"])] for row, _ in clean_rows]
    question = load_mt_bench().question(81)["turns"][0]
    rows[10] = rows[10] + [("messages[9]", tokens(edited(question, "embedded")))]  # one hit inside a batch
    batched = mt_index.scan_many(rows)
    assert batched == [mt_index.scan_tokens(segments) for segments in rows]
    assert sum(map(len, batched)) > 300 and [f.question_id for f in batched[10]] == ["81"]
