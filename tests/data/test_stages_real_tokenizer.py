"""Both stages, one process, on a tiny Klear carrying Qwen's real tokenizer and its unmarked Qwen3 template;
DPO on the real Anthropic HH file (harmless-base test, 2,312 pairs)."""

import gzip
import json

import pytest
from datasets import load_from_disk
from trl import ModelConfig, ScriptArguments, TrlParser

from align.data.demo import write_demo_data
from align.data.preference import read_preference_rows
from align.data.sources import DataReport, Source
from align.dpo.__main__ import main as dpo_main
from align.sft.__main__ import main as sft_main
from align.dpo.config import KlearDPOConfig
from align.sft.config import KlearSFTConfig
from tests.conftest import REPO_ROOT, SHARED_DATA

HH_FILE = SHARED_DATA / "hh_rlhf" / "harmless-base-test.jsonl.gz"
THINK = "<think>\n\n</think>\n\n"


def run(main, config, stage, *argv):
    return main(*TrlParser((ScriptArguments, config, ModelConfig)).parse_args_and_config(
        ["--config", str(REPO_ROOT / f"configs/{stage}/tiny.yaml"), "--report_to", "none", "--save_strategy", "no",
         "--logging_steps", "1", *argv]))


@pytest.mark.slow
def test_sft_learns_the_answer_and_end_of_turn_only_and_evaluates(tmp_path, tiny_klear_qwen_dir, qwen_tokenizer):
    data = write_demo_data(tmp_path / "data", n_train=16, n_eval=4)
    out = tmp_path / "sft"
    trainer = run(sft_main, KlearSFTConfig, "sft", "--model_name_or_path", str(tiny_klear_qwen_dir),
                  "--dataset_name", str(data["sft"]), "--output_dir", str(out), "--max_steps", "2",
                  "--eval_strategy", "steps", "--eval_steps", "2", "--eval_dataset_name", str(data["sft_eval"]))
    card = json.loads((out / "data_card.json").read_text())
    assert card["assistant_masks"] == "turn by turn" and card["kept"] == 16 and card["eval"]["kept"] == 4
    assert any("eval_loss" in entry for entry in trainer.state.log_history)

    rows = [json.loads(line)["messages"] for line in data["sft"].read_text().splitlines()]
    train = load_from_disk(str(out / "train_data"))
    assert train.column_names == ["input_ids", "assistant_masks"]
    encode = lambda text: qwen_tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    for messages, row in zip(rows, train):
        prompt = qwen_tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        head, answer, tail = encode(prompt + THINK), encode(messages[-1]["content"] + "<|im_end|>"), encode("\n")
        assert row["input_ids"] == head + answer + tail
        assert row["assistant_masks"] == [0] * len(head) + [1] * len(answer) + [0] * len(tail)


needs_hh = pytest.mark.skipif(not HH_FILE.exists(), reason=f"the real HH file is not here ({HH_FILE}; ../shared is absent)")
UNPARSEABLE = "HH transcript that cannot be cut into turns"


def check_turn_boundaries(pairs) -> int:
    """Every pair is the original transcript cut before its last Assistant turn; returns how many of them a
    cut at the common character prefix would have put inside an answer."""
    with gzip.open(HH_FILE, "rt") as f:
        raw = {_words(r["chosen"]): r for r in map(json.loads, f)}
    inside_an_answer = 0
    for pair in pairs:
        assert pair["prompt"][-1]["role"] == "user" and len(pair["prompt"]) % 2 == 1
        transcript = "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}"
                             for m in pair["prompt"] + pair["chosen"])
        original = raw[_words(transcript)]
        assert original["rejected"].rstrip().endswith(pair["rejected"][0]["content"])
        cut = len(_common_prefix(original["chosen"], original["rejected"]))
        inside_an_answer += not original["chosen"][:cut].rstrip(" ").endswith("\n\nAssistant:")
    return inside_an_answer


@needs_hh
def test_every_hh_pair_is_cut_at_a_turn_boundary_and_unparseable_ones_are_named():
    report = DataReport()
    pairs = read_preference_rows([Source(str(HH_FILE))], report)
    assert len(pairs) == 2299 and report.dropped == {UNPARSEABLE: 13}
    named = report.dropped_rows[UNPARSEABLE]
    assert named[0] == f"{HH_FILE}:87 (field 'chosen' has an empty final Assistant turn)"
    assert any(where.startswith(f"{HH_FILE}:668 (field 'chosen' turn 5 is Assistant where Human was expected")
               for where in named)
    # A cut at the common character prefix would end inside an answer for 443 of these (445 of all 2,312 rows).
    assert check_turn_boundaries(pairs) == 443


@pytest.mark.slow
@needs_hh
def test_dpo_trains_on_the_real_hh_file(tmp_path, tiny_klear_qwen_dir):
    """A seeded tenth of the file (the whole file is read, validated and counted) keeps the run short."""
    out = tmp_path / "dpo"
    trainer = run(dpo_main, KlearDPOConfig, "dpo", "--model_name_or_path", str(tiny_klear_qwen_dir),
                  "--dataset_name", "", "--dataset_mixture", json.dumps([{"path": str(HH_FILE), "weight": 0.1}]), "--output_dir", str(out),
                  "--max_steps", "1", "--per_device_train_batch_size", "2", "--max_length", "1024",
                  "--max_prompt_length", "768")
    assert trainer.state.global_step == 1
    card = json.loads((out / "data_card.json").read_text())
    assert card["sources"][str(HH_FILE)] == {"read": 2312, "used": 230}
    assert card["dropped"][UNPARSEABLE] == 13 and len(card["dropped_rows"][UNPARSEABLE]) == 13
    assert card["kept"] + sum(n for why, n in card["dropped"].items() if why != UNPARSEABLE) == 230
    pairs = load_from_disk(str(out / "train_data"))
    assert pairs.column_names == ["prompt", "chosen", "rejected"] and len(pairs) == card["kept"]
    check_turn_boundaries(pairs)


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _words(text: str) -> str:
    return " ".join(text.split())
