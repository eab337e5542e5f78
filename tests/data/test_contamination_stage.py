"""A real SFT run (`python -m align.sft`, one process, tiny Klear) with `decontaminate` and `dedup: near` drops
the planted benchmark rows and duplicates, and counts them in data_card.json."""

import gzip
import json
import os
import subprocess
import sys

import pytest

from align.data.transcripts import TranscriptError, parse_transcript
from align.data.benchmarks import load_mt_bench
from tests.conftest import REPO_ROOT, SHARED_DATA

HH = SHARED_DATA / "hh_rlhf" / "harmless-base-test.jsonl.gz"
ALIGNBENCH = SHARED_DATA / "alignbench"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not HH.is_file(), reason=f"{HH} not found")]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def hh_chats(n: int) -> list[dict]:
    chats = []
    with gzip.open(HH, "rt", encoding="utf-8") as f:
        for line in f:
            try:
                chats.append({"messages": parse_transcript(json.loads(line)["chosen"])})
            except TranscriptError:
                continue
            if len(chats) == n:
                return chats
    return chats


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, tiny_klear_dir):
    tmp = tmp_path_factory.mktemp("decontaminated-sft")
    bench = load_mt_bench()
    clean = hh_chats(40)
    long_row = max(clean, key=lambda r: sum(len(m["content"].split()) for m in r["messages"]))
    near = json.loads(json.dumps(long_row))  # one word of the longest conversation replaced
    longest = max(near["messages"], key=lambda m: len(m["content"]))
    words = longest["content"].split(" ")
    words[len(words) // 2] = "banana"
    longest["content"] = " ".join(words)
    planted = [
        {"messages": [{"role": "user", "content": bench.question(81)["turns"][0].upper()},
                      {"role": "assistant", "content": "Aloha!"}]},
        {"messages": [{"role": "user", "content": "Help me:\n\n" + bench.question(130)["turns"][0].replace(".", "。")},
                      {"role": "assistant", "content": "Sure."}]},
        {"messages": [{"role": "user", "content": "Solve it."},
                      {"role": "assistant", "content": bench.references[111][0]}]},  # a reference answer as the reply
    ]
    against = ["mt_bench"]
    if (ALIGNBENCH / "data_v1.1_release.jsonl").is_file():
        question = json.loads((ALIGNBENCH / "data_v1.1_release.jsonl").open(encoding="utf-8").readline())["question"]
        planted.append({"messages": [{"role": "user", "content": question.replace("，", ",") + " 谢谢"},
                                     {"role": "assistant", "content": "好的。"}]})
        against.append("alignbench")
    main_file = write_jsonl(tmp / "hh.jsonl", clean[:20] + planted[:2] + clean[20:] + [clean[3]])
    other_file = write_jsonl(tmp / "more.jsonl", planted[2:] + [near, clean[5]])
    mixture = [{"path": str(main_file)}, {"path": str(other_file)}]
    out = tmp / "out"
    env = {**os.environ, "ALIGNBENCH_DIR": str(ALIGNBENCH)}
    cmd = [sys.executable, "-m", "align.sft", "--config", "configs/sft/tiny.yaml",
           "--model_name_or_path", str(tiny_klear_dir), "--dataset_name", "", "--dataset_mixture", json.dumps(mixture),
           "--output_dir", str(out), "--max_steps", "1", "--report_to", "none", "--save_strategy", "no",
           "--decontaminate", *against, "--decontaminate_action", "drop", "--dedup", "near", "--dedup_threshold", "0.8"]
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"out": out, "stdout": result.stdout, "planted": planted, "against": against,
            "main": str(main_file), "other": str(other_file), "rows": len(clean) + 1 + len(planted) + 2}


def test_planted_benchmark_rows_are_dropped_and_counted_per_benchmark(sft_run):
    card = json.loads((sft_run["out"] / "data_card.json").read_text())
    section = card["decontamination"]
    assert section["checked_against"] == sft_run["against"] and section["action"] == "drop"
    expected = {"mt_bench": 3} | ({"alignbench": 1} if "alignbench" in sft_run["against"] else {})
    assert section["flagged"] == expected and section["dropped"] == expected
    assert section["rows_dropped"] == sum(expected.values())
    assert {(e["benchmark"], e["question_id"]) for e in section["examples"]} >= {
        ("mt_bench", "81"), ("mt_bench", "130"), ("mt_bench", "111")}
    assert card["dropped"]["benchmark contamination (mt_bench)"] == 3
    assert "benchmark contamination (mt_bench)" in sft_run["stdout"]


def test_duplicates_are_dropped_and_counted_per_source_with_the_threshold(sft_run):
    card = json.loads((sft_run["out"] / "data_card.json").read_text())
    dedup = card["deduplication"]
    assert (dedup["mode"], dedup["threshold"]) == ("near", 0.8)
    assert dedup["dropped"] == {sft_run["main"]: {"exact": 1}, sft_run["other"]: {"exact": 1, "near": 1}}
    from datasets import load_from_disk

    kept = len(load_from_disk(str(sft_run["out"] / "train_data")))
    assert card["kept"] == kept and kept + sum(card["dropped"].values()) == sft_run["rows"]
