"""A resumed run equals the uninterrupted one and its summary counts the whole run (issue #18 item 9): TRL's
SFT trainer resets its token count when built, so the checkpoint carries it over, with the expert loads; and
without DeepSpeed the checkpoint's experts and expert bias are loaded too (transformers' plain load skipped
them). One process, tiny SFT: four short runs."""

import json
import shutil

import pytest

from align.data.demo import write_demo_data
from align.training.trainer import RUN_COUNTS
from tests.expert_load import assert_same_expert_load
from tests.training.sft_run import sft

STEPS = 4


def summary(out) -> dict:
    return json.loads((out / "training_summary.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_klear_dir):
    """An uninterrupted run of STEPS steps, and one stopped after 2 (its summary removed: interrupted), twice
    (`resumed`, `old`), for the tests to relaunch with the same command for STEPS."""
    root = tmp_path_factory.mktemp("resume-counts")
    data = write_demo_data(root / "data", n_train=16, n_eval=4)["sft"]
    model = ["--model_name_or_path", str(tiny_klear_dir)]
    sft(root / "straight", data, STEPS, *model)
    sft(root / "resumed", data, 2, *model)
    (root / "resumed" / "training_summary.json").unlink()
    shutil.copytree(root / "resumed", root / "old")
    return root, data, model


def test_the_resumed_summary_counts_the_whole_run(runs, capsys):
    root, data, model = runs
    sft(root / "resumed", data, STEPS, *model)
    assert "resuming from " + str(root / "resumed" / "checkpoint-2") in capsys.readouterr().out
    whole, resumed = summary(root / "straight"), summary(root / "resumed")
    assert resumed["resumed_from_step"] == 2 and resumed["global_steps"] == STEPS
    assert resumed["train_tokens"] == whole["train_tokens"] > 0
    assert_same_expert_load(resumed, whole)
    assert resumed["final_loss"] == pytest.approx(whole["final_loss"], abs=1e-5)
    assert "counted_since_resume" not in resumed
    # this launch's tokens (steps 3-4) over this launch's runtime
    state = json.loads((root / "resumed" / "checkpoint-2" / "trainer_state.json").read_text())
    since = resumed["train_tokens"] - state["stateful_callbacks"][RUN_COUNTS]["train_tokens"]
    assert 0 < since < resumed["train_tokens"]
    assert resumed["tokens_per_s"] == pytest.approx(since / resumed["train_runtime_s"])


def test_a_checkpoint_without_counts_says_what_counts_from_the_resume(runs, capsys):
    root, data, model = runs
    out = root / "old"
    state_file = out / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["stateful_callbacks"][RUN_COUNTS]  # as a checkpoint written before the counts were kept
    state_file.write_text(json.dumps(state))
    sft(out, data, STEPS, *model)
    assert "checkpoint-2 holds no run counts: train_tokens, expert loads and RL counts" in capsys.readouterr().out
    resumed = summary(out)
    assert resumed["counted_since_resume"] == ["train_tokens", "expert_load", "rl"]
    before = next(e["num_tokens"] for e in state["log_history"] if e.get("step") == 2 and "num_tokens" in e)
    assert resumed["train_tokens"] == summary(root / "straight")["train_tokens"] - before  # steps 3-4 only
