"""Chat data: strict validation with file/line/field errors, mixtures, counted truncation."""

import json

import datasets
import pytest
from transformers import AutoTokenizer

from align.data.chat import build_sft_dataset, validate_chat_row
from align.data.sources import DataError, DataReport, Source, sample_mixture


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat(user="Hi", assistant="Hello"):
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"text": "x"}, "field 'messages' is missing"),
        ({"messages": []}, "field 'messages' must be a non-empty list"),
        ({"messages": [{"content": "hi"}]}, "field 'messages[0].role' is missing"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "field 'messages[0].role' is 'robot'"),
        ({"messages": [{"role": "user", "content": "  "}]}, "field 'messages[0].content' is empty"),
        ({"messages": [{"role": "user"}]}, "field 'messages[0].content' is missing"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            "field 'messages[1].role' is 'user' where 'assistant' was expected",
        ),
        (
            {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "b"}]},
            "field 'messages[1].role' is 'assistant' where 'user' was expected",
        ),
        ({"messages": [{"role": "user", "content": "a"}]}, "field 'messages[0].role' must be 'assistant'"),
    ],
)
def test_malformed_rows_name_the_file_line_and_field(tmp_path, tiny_klear_dir, row, expected):
    path = write_jsonl(tmp_path / "chat.jsonl", [chat(), chat(), row])
    tokenizer = AutoTokenizer.from_pretrained(tiny_klear_dir)
    with pytest.raises(DataError) as err:
        build_sft_dataset([Source(str(path))], tokenizer, 64, DataReport())
    assert f"{path}:3: " in str(err.value) and expected in str(err.value)


def test_non_utf8_and_bad_json_name_the_line(tmp_path, tiny_klear_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_klear_dir)
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(chat()).encode() + b"\n" + b'{"messages": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid UTF-8"):
        build_sft_dataset([Source(str(path))], tokenizer, 64, DataReport())
    path.write_text(json.dumps(chat()) + "\n{not json\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        build_sft_dataset([Source(str(path))], tokenizer, 64, DataReport())


def test_system_message_and_multi_turn_are_accepted():
    row = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
            {"role": "assistant", "content": "d"},
        ]
    }
    assert [m["role"] for m in validate_chat_row(row, "x")["messages"]] == ["system", "user", "assistant", "user", "assistant"]


def test_loss_mask_covers_assistant_tokens_only_and_truncation_is_counted(tmp_path, tiny_klear_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_klear_dir)
    long_user = "word " * 200
    path = write_jsonl(tmp_path / "c.jsonl", [chat("Hi", "Paris."), chat(long_user, "ok"), chat("Hi " * 5, "yes " * 40)])
    report = DataReport()
    dataset = build_sft_dataset([Source(str(path))], tokenizer, 48, report)
    assert report.kept == 2 and len(dataset) == 2
    assert report.dropped == {"no assistant token within max_length=48": 1}
    assert report.truncated == {"longer than max_length=48": 2}
    first = dataset[0]
    answer = [t for t, m in zip(first["input_ids"], first["assistant_masks"]) if m]
    assert tokenizer.decode(answer) == "Paris.<|im_end|>"
    assert all(len(ids) <= 48 for ids in dataset["input_ids"])


def test_mixture_weights_from_jsonl_parquet_and_saved_dataset(tmp_path, tiny_klear_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_klear_dir)
    a = write_jsonl(tmp_path / "a.jsonl", [chat(f"a{i}", "x") for i in range(10)])
    datasets.Dataset.from_list([chat(f"b{i}", "y") for i in range(4)]).to_parquet(str(tmp_path / "b.parquet"))
    datasets.Dataset.from_list([chat(f"c{i}", "z") for i in range(3)]).save_to_disk(str(tmp_path / "c"))
    report = DataReport()
    sources = [
        Source.parse({"path": str(a), "weight": 0.5}),
        Source.parse({"path": str(tmp_path / "b.parquet"), "weight": 2}),
        Source.parse(str(tmp_path / "c")),
    ]
    dataset = build_sft_dataset(sources, tokenizer, 64, report)
    assert [s["used"] for s in report.sources.values()] == [5, 8, 3]
    assert len(dataset) == 16 == report.kept


def test_mixture_sampling_is_deterministic_and_exact():
    rows = {"a": list(range(10)), "b": list(range(3))}
    first = sample_mixture(rows, {"a": 0.3, "b": 1.5}, seed=7)
    assert first == sample_mixture(rows, {"a": 0.3, "b": 1.5}, seed=7)
    assert len(first["a"]) == 3 and len(first["b"]) == 3 + 2
    assert len(set(first["a"])) == 3


def test_bad_mixture_entries_and_missing_files_are_clear(tmp_path):
    with pytest.raises(DataError, match="field 'weight' must be a positive number"):
        Source.parse({"path": "x.jsonl", "weight": 0})
    with pytest.raises(DataError, match="expected keys path, weight, split"):
        Source.parse({"file": "x.jsonl"})
    with pytest.raises(DataError, match="no such file"):
        build_sft_dataset([Source(str(tmp_path / "missing.jsonl"))], None, 8, DataReport())


def test_a_rerun_on_the_same_rows_loads_the_tokenised_set_from_the_cache(tmp_path, tiny_klear_dir, monkeypatch):
    import datasets as hf_datasets

    monkeypatch.setattr(hf_datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    tokenizer = AutoTokenizer.from_pretrained(tiny_klear_dir)
    path = write_jsonl(tmp_path / "c.jsonl", [chat("Hi", "Paris."), chat("word " * 200, "ok")])
    first_report, second_report = DataReport(), DataReport()
    first = build_sft_dataset([Source(str(path))], tokenizer, 48, first_report)
    cached = next((tmp_path / "cache" / "klear_align").glob("sft-*.arrow"))
    written = cached.stat().st_mtime_ns
    second = build_sft_dataset([Source(str(path))], tokenizer, 48, second_report)
    assert cached.stat().st_mtime_ns == written  # read, not written again
    assert second["input_ids"] == first["input_ids"] and second_report.as_dict() == first_report.as_dict()
    third = build_sft_dataset([Source(str(path))], tokenizer, 32, DataReport())  # other settings: tokenised anew
    assert len(list((tmp_path / "cache" / "klear_align").glob("sft-*.arrow"))) == 2 and len(third) == 1
