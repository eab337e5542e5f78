"""Bad inputs to the stages fail at once with a message naming the file, line, field or value, and
nothing is written into output_dir (a finished run there stays as it was)."""

import json
import shutil

import pytest
from trl import ModelConfig, ScriptArguments, TrlParser

from align.data.demo import write_demo_data
from align.data.sources import DataError
from align.dpo.__main__ import main as dpo_main
from align.sft.__main__ import main as sft_main
from align.dpo.config import KlearDPOConfig
from align.sft.config import KlearSFTConfig
from tests.conftest import REPO_ROOT
from tests.training.checkpoint_files import write_checkpoint

STAGES = {"sft": (sft_main, KlearSFTConfig), "dpo": (dpo_main, KlearDPOConfig)}


def run(stage, *argv):
    main, config = STAGES[stage]
    return main(*TrlParser((ScriptArguments, config, ModelConfig)).parse_args_and_config(
        ["--config", str(REPO_ROOT / f"configs/{stage}/tiny.yaml"), "--report_to", "none", "--save_strategy", "no", *argv]))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_demo_data(tmp_path_factory.mktemp("data"), n_train=16, n_eval=4)


@pytest.fixture
def out(tmp_path):
    return tmp_path / "out"


def nothing_written(out):
    return not out.exists()


def test_a_missing_local_dataset_fails_at_once(tmp_path, tiny_klear_dir, out, monkeypatch):
    with pytest.raises(DataError, match=r"data/prefs-v2: no such file or directory \(it looks like a local path"):
        run("dpo", "--model_name_or_path", str(tiny_klear_dir), "--dataset_name", str(tmp_path / "data/prefs-v2"),
            "--output_dir", str(out))
    assert nothing_written(out)
    monkeypatch.chdir(tmp_path)  # `data/prefs-v2` where ./data exists: a local path, not a hub id
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match=r"^data/prefs-v2: no such file or directory"):
        run("dpo", "--model_name_or_path", str(tiny_klear_dir),
            "--dataset_name", "data/prefs-v2", "--output_dir", str(out))
    assert nothing_written(out)


def test_a_missing_local_model_fails_at_once(tmp_path, data, out, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match=r"model_name_or_path 'runs/no-such-model': no such file or directory"):
        run("sft", "--model_name_or_path", "runs/no-such-model",
            "--dataset_name", str(data["sft"]), "--output_dir", str(out))
    assert nothing_written(out)


@pytest.fixture
def unreachable_hub(monkeypatch):
    """Hub look-ups go to a loopback port nobody listens on (no traffic leaves the machine), and are
    not switched off: what a user without a network and without HF_HUB_OFFLINE meets."""
    from huggingface_hub import constants

    from align.common.ports import free_loopback_port

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{free_loopback_port()}")


@pytest.mark.parametrize("offline", [True, False], ids=["offline", "hub-unreachable"])
def test_a_hub_style_name_that_is_nowhere_fails_in_one_line(tmp_path, tiny_klear_dir, data, out, monkeypatch,
                                                             offline, request):
    """`runs/no-such-model` and `data/prefs-v2` where neither folder exists could be hub ids: the Hub is
    asked once, without the client's retries, and the error says both places were looked in."""
    if not offline:
        request.getfixturevalue("unreachable_hub")
    monkeypatch.chdir(tmp_path)
    nowhere = r"no local file or directory of that name, and the Hugging Face Hub did not provide it"
    with pytest.raises(FileNotFoundError, match=rf"^model_name_or_path 'runs/no-such-model': {nowhere}"):
        run("sft", "--model_name_or_path", "runs/no-such-model", "--dataset_name", str(data["sft"]),
            "--output_dir", str(out))
    with pytest.raises(FileNotFoundError, match=rf"^dataset 'data/prefs-v2': {nowhere}"):
        run("dpo", "--model_name_or_path", str(tiny_klear_dir), "--dataset_name", "data/prefs-v2",
            "--output_dir", str(out))
    assert nothing_written(out)


@pytest.mark.parametrize("option, value, message", [
    ("--max_steps", "-5", "max_steps must be a positive number of optimiser steps, or -1"),
    ("--max_steps", "0", "max_steps must be a positive number"),
    ("--learning_rate", "-0.1", "learning_rate must not be negative"),
    ("--max_length", "0", "max_length must be at least 1"),
])
def test_invalid_values_are_refused(tiny_klear_dir, data, out, option, value, message):
    with pytest.raises(ValueError, match=message):
        run("sft", "--model_name_or_path", str(tiny_klear_dir), "--dataset_name", str(data["sft"]),
            "--output_dir", str(out), option, value)
    assert nothing_written(out)


def test_rows_mixing_formats_are_located(tmp_path, tiny_klear_dir, out):
    path = tmp_path / "mixed.jsonl"
    rows = [{"prompt": "Q: 2+2? A:", "chosen": " 4", "rejected": " 5"},
            {"prompt": [{"role": "user", "content": "2+2?"}], "chosen": [{"role": "assistant", "content": "4"}],
             "rejected": [{"role": "assistant", "content": "5"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as err:
        run("dpo", "--model_name_or_path", str(tiny_klear_dir), "--dataset_name", str(path), "--output_dir", str(out))
    assert str(err.value).startswith(f"{path}:2: field 'chosen' is messages but {path}:1 has text")
    assert nothing_written(out)


def test_chat_rows_in_csv_are_refused_clearly(tmp_path, tiny_klear_dir, out):
    path = tmp_path / "chat.csv"
    path.write_text('messages\n"[{""role"": ""user"", ""content"": ""hi""}]"\n')
    with pytest.raises(DataError, match=r"chat.csv:2: field 'messages' is text where a list of messages was expected "
                                        r"\(a CSV cell is always text"):
        run("sft", "--model_name_or_path", str(tiny_klear_dir), "--dataset_name", str(path), "--output_dir", str(out))
    assert nothing_written(out)


def test_a_model_that_does_not_load_leaves_output_dir_untouched(tmp_path, tiny_klear_dir, data, out):
    """The data is read and valid; the checkpoint has a tokenizer but no weights: nothing is written."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "config.json"):
        shutil.copy(tiny_klear_dir / name, broken / name)
    with pytest.raises(OSError, match="model.safetensors"):
        run("sft", "--model_name_or_path", str(broken), "--dataset_name", str(data["sft"]), "--output_dir", str(out))
    assert nothing_written(out)


def test_a_finished_run_is_not_overwritten_unless_asked(tmp_path, tiny_klear_dir, data, out):
    out.mkdir()
    (out / "training_summary.json").write_text('{"global_steps": 40}\n')
    (out / "data_card.json").write_text('{"kept": 256}\n')
    with pytest.raises(ValueError, match=r"holds a finished run \(training_summary.json\); choose another output_dir, "
                                         r"resume with --resume_from_checkpoint true \(its last checkpoint\) or a checkpoint path, or replace it with --overwrite_output_dir"):
        run("sft", "--model_name_or_path", str(tiny_klear_dir), "--dataset_name", str(data["sft"]),
            "--output_dir", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["data_card.json", "training_summary.json"]
    assert (out / "data_card.json").read_text() == '{"kept": 256}\n'
    trainer = run("sft", "--model_name_or_path", str(tiny_klear_dir), "--dataset_name", str(data["sft"]),
                  "--output_dir", str(out), "--overwrite_output_dir", "true", "--max_steps", "1")
    assert trainer.state.global_step == 1
    assert json.loads((out / "data_card.json").read_text())["kept"] == 16


def test_dataset_name_and_a_mixture_together_are_refused_naming_both(tmp_path, tiny_klear_dir, data, out):
    """Issue #18 item 6: the mixture silently replaced dataset_name."""
    mixture = json.dumps([{"path": str(data["sft"]), "weight": 1.0}])
    with pytest.raises(DataError, match=r"both dataset_name \('.*sft.jsonl'\) and dataset_mixture are set"):
        run("sft", "--model_name_or_path", str(tiny_klear_dir), "--dataset_name", str(data["sft"]),
            "--dataset_mixture", mixture, "--output_dir", str(out))
    assert nothing_written(out)


def test_a_model_directory_without_config_json_is_named(tmp_path, data, out):
    """Issue #18 item 11: transformers said "You need to have sentencepiece or tiktoken installed"."""
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(FileNotFoundError, match=r"'.*not-a-model' is a directory without config.json"):
        run("sft", "--model_name_or_path", str(tmp_path / "not-a-model"), "--dataset_name", str(data["sft"]),
            "--output_dir", str(out))
    assert nothing_written(out)


def test_resume_true_means_the_last_checkpoint_in_output_dir(tmp_path, tiny_klear_dir, data, out):
    """Issue #18 item 8: `true` was taken as a path ("Can't find a valid checkpoint at true")."""
    from align.training.run import check_output_dir

    with pytest.raises(ValueError, match="holds no checkpoint-N directory"):
        run("sft", "--model_name_or_path", str(tiny_klear_dir), "--dataset_name", str(data["sft"]),
            "--output_dir", str(out), "--resume_from_checkpoint", "true")
    assert nothing_written(out)
    for step in (2, 10, 4):
        write_checkpoint(out, step)
    _, args, _ = TrlParser((ScriptArguments, KlearSFTConfig, ModelConfig)).parse_args_and_config(
        ["--config", str(REPO_ROOT / "configs/sft/tiny.yaml"), "--output_dir", str(out), "--resume_from_checkpoint", "true"])
    check_output_dir(args)
    assert args.resume_from_checkpoint == str(out / "checkpoint-10")
