"""push's input checks (every problem named by file, line and field) and the pairs made from it."""

import json

import pytest

from annotation.errors import AnnotationError
from annotation.logic.pairs import make_pairs, parse_rows, read_input_rows
from annotation.push import ExistingRecord, plan_push, record_fields


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def good_row(prompt="What is DPO?", n=2, **extra):
    completions = [{"model": f"m{i}", "content": f"answer {i} to {prompt}"} for i in range(n)]
    return {"prompt": prompt, "completions": completions, **extra}


def parse(tmp_path, rows):
    return parse_rows(read_input_rows(write_jsonl(tmp_path / "in.jsonl", rows)))


def test_every_bad_row_is_named_by_line_and_field(tmp_path):
    rows = [
        good_row("fine"),
        {"prompt": "no answers"},
        {"prompt": "one answer", "completions": [{"model": "m", "content": "only me"}]},
        good_row("fine"),  # duplicate prompt
        "{not json",
        {"prompt": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
         "completions": [{"model": "m", "content": "x"}, {"model": "n", "content": "y"}]},
        {"prompt": "p", "completions": [{"model": "m", "content": "x"}, {"content": "y"}]},
        {"prompt": "q", "completions": [{"model": "m", "content": "same"}, {"model": "n", "content": "same"}]},
        good_row("r", metadata={"model_a": "sneaky"}),
        good_row("s", id="dup"),
        good_row("t", id="dup"),
    ]
    with pytest.raises(AnnotationError) as caught:
        parse(tmp_path, rows)
    message = str(caught.value)
    path = tmp_path / "in.jsonl"
    assert "9 bad input row(s)" in message
    assert f"{path}:2: field 'completions' is missing" in message
    assert f"{path}:3: field 'completions' has 1 answer; a pair needs two or more" in message
    assert f"{path}:4: field 'prompt': duplicate prompt (same as {path}:1)" in message
    assert f"{path}:5: not valid JSON" in message
    assert f"{path}:6: field 'prompt': the last message must be the user's" in message
    assert f"{path}:7: field 'completions[1]'.model is missing" in message
    assert f"{path}:8: field 'completions' has 1 distinct answers" in message
    assert f"{path}:9: field 'metadata.model_a' is reserved" in message
    assert f"{path}:11: field 'id': 'dup' is also the id of {path}:10" in message


def test_empty_input_is_an_error(tmp_path):
    with pytest.raises(AnnotationError, match="no rows"):
        parse(tmp_path, [])


def test_pairs_ids_are_content_addressed_and_the_order_is_seeded(tmp_path):
    report = parse(tmp_path, [good_row("p", n=3, id="q1", metadata={"source": "demo", "category": "c"})])
    pairs, capped = make_pairs(report.rows)
    assert len(pairs) == 3 and capped == 0
    again, _ = make_pairs(report.rows)
    assert [(p.id, p.answer_a, p.answer_b) for p in pairs] == [(p.id, p.answer_a, p.answer_b) for p in again]

    # the same answers listed in another order: the same ids and the same A/B order
    row = good_row("p", n=3, id="q1", metadata={"source": "demo", "category": "c"})
    row["completions"].reverse()
    reversed_pairs, _ = make_pairs(parse(tmp_path, [row]).rows)
    assert sorted((p.id, p.answer_a.content) for p in reversed_pairs) == sorted((p.id, p.answer_a.content) for p in pairs)

    first = pairs[0]
    assert first.id.startswith("q1:")
    assert first.metadata["model_a"] == first.answer_a.model
    assert first.metadata["model_b"] == first.answer_b.model
    assert first.metadata["models"] == sorted({first.answer_a.model, first.answer_b.model})
    assert first.metadata["source"] == "demo" and first.metadata["prompt_id"] == "q1"
    assert record_fields(first)["prompt"] == [{"role": "user", "content": "p"}]


def test_ab_order_is_balanced_and_depends_on_the_seed(tmp_path):
    rows = [good_row(f"prompt {i}") for i in range(400)]
    report = parse(tmp_path, rows)
    pairs, _ = make_pairs(report.rows, seed=0)
    flipped = sum(p.flipped for p in pairs)
    assert 160 < flipped < 240  # a fair coin: 200 +- 4 sd
    other, _ = make_pairs(report.rows, seed=1)
    assert [p.id for p in other] == [p.id for p in pairs]
    assert sum(a.flipped != b.flipped for a, b in zip(pairs, other)) > 100


def test_cap_and_identical_answers_are_counted(tmp_path):
    row = good_row("p", n=4)
    row["completions"].append(dict(row["completions"][0]))
    report = parse(tmp_path, [row])
    assert report.identical_answers_dropped == 1
    pairs, capped = make_pairs(report.rows, max_pairs_per_prompt=2)
    assert (len(pairs), capped) == (2, 4)


def test_prompt_id_defaults_to_a_hash_of_the_prompt(tmp_path):
    one = parse(tmp_path, [good_row("same prompt")]).rows[0]
    two = parse(tmp_path, [good_row("same prompt", n=3)]).rows[0]
    assert one.prompt_id == two.prompt_id and one.prompt_id.startswith("p-")


def test_plan_push_leaves_annotated_records_alone(tmp_path):
    pairs, _ = make_pairs(parse(tmp_path, [good_row(f"p{i}") for i in range(5)]).rows)
    new, annotated, same, changed, unjudged = pairs

    def existing(pair, annotated=False, metadata=None, suggested=True):
        return ExistingRecord(annotated, record_fields(pair), metadata or dict(pair.metadata), suggested)

    found = {
        annotated.id: existing(annotated, annotated=True, metadata={"changed": True}),
        same.id: existing(same),
        changed.id: existing(changed, metadata={"category": "old"}),
        unjudged.id: existing(unjudged, suggested=False),
    }
    plan = plan_push(pairs, found, judged=False)
    assert [p.id for p in plan.to_create] == [new.id]
    assert [p.id for p in plan.to_update] == [changed.id]
    assert (plan.unchanged, plan.skipped_annotated) == (2, 1)
    judged = plan_push(pairs, found, judged=True)
    assert [p.id for p in judged.to_update] == [changed.id, unjudged.id]
