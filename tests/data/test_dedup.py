"""Duplicates within a training mixture (exact after normalisation, near by MinHash LSH), and the stages' hygiene
step: decontamination and dedup on `datasets.Dataset` rows, counted per benchmark and per source."""

import random

import pytest
from datasets import Dataset

from align.data.contamination import tokens
from align.data.dedup import find_duplicates
from align.data.hygiene import clean_training_rows
from align.data.sources import DataReport
from align.data.benchmarks import load_mt_bench
from align.dpo.config import KlearDPOConfig
from align.sft.config import KlearSFTConfig
from tests.conftest import HH_HARMLESS_TEST, SHARED_DATA

HH = HH_HARMLESS_TEST
needs_shared = pytest.mark.skipif(not HH.is_file(), reason=f"{HH} not found (../shared/data is beside the checkout)")


def segments(*texts):
    return [(f"messages[{i}]", tokens(t)) for i, t in enumerate(texts)]


def test_exact_duplicates_ignore_case_whitespace_and_punctuation_and_are_counted_per_source():
    rows = [segments("Hello there!", "Hi."), segments("HELLO   there", "hi"), segments("Hello there", "Bye"),
            segments("hello, there.", "HI!")]
    found = find_duplicates(rows, ["a.jsonl", "a.jsonl", "b.jsonl", "b.jsonl"], threshold=None)
    assert found.keep == [0, 2]
    assert {source: dict(c) for source, c in found.dropped.items()} == {"a.jsonl": {"exact": 1}, "b.jsonl": {"exact": 1}}
    assert [(d["row"], d["duplicate_of"]) for d in found.dropped_rows] == [(1, 0), (3, 0)]


def test_a_message_moved_to_another_field_is_not_an_exact_duplicate():
    prompt_first = [("prompt[0]", tokens("a b")), ("chosen[0]", tokens("c d"))]
    answer_first = [("prompt[0]", tokens("a b c d"))]
    assert find_duplicates([prompt_first, answer_first], ["s", "s"], threshold=None).keep == [0, 1]


def test_weighted_copies_are_not_duplicates_and_follow_their_original():
    rows = [segments("one two"), segments("one two"), segments("ONE two"), segments("one two")]
    origins = ["x:1", "x:1", "y:1", "y:1"]  # x:1 twice (weight 2), then y:1 (a real duplicate) twice
    found = find_duplicates(rows, ["x", "x", "y", "y"], threshold=None, origins=origins)
    assert found.keep == [0, 1]
    assert dict(found.dropped["y"]) == {"exact": 1, "copy of a dropped row": 1}


@needs_shared
def test_near_duplicates_of_real_conversations_are_found_and_distinct_ones_kept(hh_conversations):
    """Planted: 60 long HH conversations (200+ tokens) with one word deleted and one replaced: their true Jaccard
    similarity (5-token shingles, computed here) is at least 0.9, so LSH at 0.8 finds them (a miss is possible but
    rare: LSH and the MinHash estimate are probabilistic; the seed is fixed). No HH conversation is dropped: the
    closest pair in the split (one conversation repeated turn for turn up to a different last answer) has a true
    Jaccard similarity of 0.75, below the threshold."""
    rows = [segments(*(m["content"] for m in c)) for c in hh_conversations]
    rng = random.Random(0)
    long_rows = [i for i, row in enumerate(rows) if sum(len(t) for _, t in row) >= 200]
    planted = []
    for i in rng.sample(long_rows, len(long_rows)):
        fields = [list(t) for _, t in rows[i]]
        longest = max(fields, key=len)
        del longest[len(longest) // 2]
        longest[len(longest) // 3] = "banana"
        edited = [(name, tuple(t)) for (name, _), t in zip(rows[i], fields)]
        if jaccard(edited, rows[i]) >= 0.9 and len(planted) < 60:
            planted.append(edited)
    sources = ["hh"] * len(rows) + ["planted"] * len(planted)
    found = find_duplicates(rows + planted, sources, threshold=0.8)
    assert "hh" not in found.dropped
    assert len(planted) == 60
    assert found.dropped["planted"]["near"] >= 59, dict(found.dropped["planted"])
    assert all(d["similarity"] >= 0.8 for d in found.dropped_rows)


def jaccard(a, b) -> float:
    """The true Jaccard similarity of two rows' 5-token shingles (fields joined by a separator token)."""
    def shingles(row):
        stream = [token for _, toks in row for token in (*toks, "|")][:-1]
        return {tuple(stream[i:i + 5]) for i in range(max(1, len(stream) - 4))}

    return len(shingles(a) & shingles(b)) / len(shingles(a) | shingles(b))


def chat_rows(*pairs, source="chat.jsonl"):
    return [{"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}], "source": source,
             "location": f"{source}:{i + 1}"} for i, (u, a) in enumerate(pairs)]


def test_clean_training_rows_drops_contaminated_and_duplicate_chat_rows_and_fills_the_data_card(tmp_path):
    question = load_mt_bench().question(81)["turns"][0]
    rows = chat_rows(("What is the capital of France?", "Paris."), (question.upper(), "Aloha."),
                     ("Tell me a joke", "No."), ("tell me a joke!!", "no"), source="a.jsonl")
    rows += chat_rows(("What is the capital of France", "Paris"), ("Plain row", "Plain answer"), source="b.jsonl")
    args = KlearSFTConfig(output_dir=str(tmp_path), use_cpu=True, decontaminate=["mt_bench"], dedup="exact",
                          judge={"enabled": False})
    assert args.data_hygiene.action == "drop"  # a judged recipe drops by default
    report = DataReport()
    kept = clean_training_rows(Dataset.from_list(rows), args.data_hygiene, report)
    assert kept["location"] == ["a.jsonl:1", "a.jsonl:3", "b.jsonl:2"]
    card = report.as_dict()
    section = card["decontamination"]
    assert (section["checked_against"], section["action"]) == (["mt_bench"], "drop")
    assert (section["flagged"], section["dropped"], section["rows_dropped"]) == ({"mt_bench": 1}, {"mt_bench": 1}, 1)
    assert section["examples"][0]["question_id"] == "81" and section["examples"][0]["location"] == "a.jsonl:2"
    assert card["deduplication"]["dropped"] == {"a.jsonl": {"exact": 1}, "b.jsonl": {"exact": 1}}
    assert card["dropped"] == {"benchmark contamination (mt_bench)": 1, "duplicate (exact)": 2}
    assert card["dropped_rows"]["benchmark contamination (mt_bench)"] == ["a.jsonl:2"]


def test_report_action_flags_but_keeps_and_preference_rows_of_both_formats_are_checked(tmp_path):
    question = load_mt_bench().question(101)["turns"][0]
    rows = [
        {"prompt": [{"role": "user", "content": question}], "chosen": [{"role": "assistant", "content": "a"}],
         "rejected": [{"role": "assistant", "content": "b"}], "source": "p", "location": "p:1"},
        {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": question}],
         "rejected": [{"role": "assistant", "content": "no"}], "source": "p", "location": "p:2"},
        {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "yes"}],
         "rejected": [{"role": "assistant", "content": "no"}], "source": "p", "location": "p:3"},
    ]
    args = KlearDPOConfig(output_dir=str(tmp_path), use_cpu=True, decontaminate=["mt_bench"])
    assert args.data_hygiene.action == "report"  # no judge section: report only
    report = DataReport()
    kept = clean_training_rows(Dataset.from_list(rows), args.data_hygiene, report)
    assert len(kept) == 3
    section = report.as_dict()["decontamination"]
    assert section["flagged"] == {"mt_bench": 2} and section["dropped"] == {"mt_bench": 0}
    assert [e["field"] for e in section["examples"]] == ["prompt[0]", "chosen[0]"]
    strings = Dataset.from_list([{"prompt": question, "chosen": "x", "rejected": "y", "source": "s", "location": "s:1"}])
    report = DataReport()
    clean_training_rows(strings, args.data_hygiene, report)
    assert report.as_dict()["decontamination"]["flagged"] == {"mt_bench": 1}


def test_nothing_asked_nothing_done(tmp_path):
    dataset = Dataset.from_list(chat_rows(("a", "b"), ("a", "b")))
    report = DataReport()
    assert clean_training_rows(dataset, KlearSFTConfig(output_dir=str(tmp_path), use_cpu=True).data_hygiene, report) is dataset
    assert "decontamination" not in report.as_dict() and "deduplication" not in report.as_dict()
