"""RL rows and recipe values: a bad row or value is one located line; what a row may hold goes through."""

import json

import pytest
from trl import ModelConfig, ScriptArguments, TrlParser

from align.data.sources import DataError, DataReport, Source
from align.rl.config import KlearGRPOConfig
from align.rl.data import read_prompt_rows
from tests.distributed import REPO_ROOT


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompt_rows_keep_the_reward_columns(tmp_path):
    data = write_rows(tmp_path / "p.jsonl", [
        {"prompt": [{"role": "user", "content": "1+1?"}], "answer": 2},
        {"prompt": [{"role": "user", "content": "2+2?"}], "answer": "4"},
    ])
    rows = read_prompt_rows([Source(str(data))], DataReport())
    assert rows["answer"] == ["2", "4"] and rows["location"] == [f"{data}:1", f"{data}:2"]


@pytest.mark.parametrize("row,message", [
    ({"answer": "1"}, ":2: field 'prompt' is missing"),
    ({"prompt": "  "}, ":2: field 'prompt' is empty"),
    ({"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
     ":2: field 'prompt[1].role' must be 'user'"),
    ({"prompt": "q", "chosen": "a"}, ":2: field 'chosen' is not read by the RL stage"),
    ({"prompt": "q", "answer": ["x"]}, ":2: field 'answer' must be text or a number"),
])
def test_a_bad_row_is_named(tmp_path, row, message):
    data = write_rows(tmp_path / "p.jsonl", [{"prompt": "fine"}, row])
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_prompt_rows([Source(str(data))], DataReport())


def parse(tmp_path, *extra):
    argv = ["--model_name_or_path", "x", "--output_dir", str(tmp_path), "--use_cpu", "true", "--bf16", "false",
            "--reward_funcs", "math", *extra]
    return TrlParser((ScriptArguments, KlearGRPOConfig, ModelConfig)).parse_args_and_config(argv)[1]


def test_rl_defaults_turn_the_aux_loss_off_and_freeze_the_bias(tmp_path):
    args = parse(tmp_path)
    assert args.router_aux_loss_coef == 0.0 and args.expert_bias_update == "frozen"


@pytest.mark.parametrize("extra,message", [
    (["--loss_type", "ppo"], "loss_type must be one of grpo, .*gppo"),
    (["--loss_type", "dapo", "--dual_clip", "10"], "dual_clip is set but loss_type is 'dapo'"),
    (["--loss_type", "gppo", "--importance_sampling_level", "sequence"], "gppo supports importance_sampling_level"),
    (["--loss_type", "gppo", "--dual_clip", "0.5"], "dual_clip must be greater than 1"),
    (["--reward_weights", "1.0", "2.0"], "reward_weights has 2 values for 1 reward_funcs"),
])
def test_bad_values_are_refused(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        parse(tmp_path, *extra)


def test_a_code_recipe_on_a_machine_without_a_working_sandbox_stops_at_start(tmp_path, monkeypatch, capsys):
    """The stage's CLI with `reward_funcs: [code]` where bubblewrap cannot be found: one line, exit 1,
    before any data or model is read and with nothing written."""
    from align.rl import sandbox
    from align.rl.__main__ import main as rl_main
    from align.training.cli import run_stage

    monkeypatch.setattr(sandbox, "_default", None)  # the process's pool is made afresh, under this PATH
    monkeypatch.setenv("PATH", str(tmp_path / "no-bwrap-here"))
    monkeypatch.delenv("KLEAR_DEBUG", raising=False)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        run_stage("align.rl", rl_main, KlearGRPOConfig,
                  ["--config", str(REPO_ROOT / "configs/rl/tiny.yaml"), "--reward_funcs", "code", "--output_dir", str(out),
                   "--dataset_name", str(tmp_path / "missing.jsonl"), "--model_name_or_path", str(tmp_path / "none")])
    assert exit_.value.code == 1
    line, = capsys.readouterr().err.splitlines()
    assert "the code sandbox does not work here: sandbox_error: bubblewrap (bwrap) is not installed" in line
    assert "missing.jsonl" not in line and not out.exists()


@pytest.fixture
def no_deepspeed_left(monkeypatch):
    """Parsing a DeepSpeed config registers it process-wide (transformers' weak reference); later tests in this
    process must not load models under it."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    for name in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    unset_hf_deepspeed_config()


@pytest.mark.parametrize("route", ["--deepspeed", "accelerate launch's environment"])
def test_vllm_with_expert_parallelism_is_refused_when_parsed(tmp_path, no_deepspeed_left, route):
    config = str(REPO_ROOT / "configs/deepspeed/zero3-ep2.json")
    extra = ["--deepspeed", config] if route == "--deepspeed" else []
    if not extra:  # what `accelerate launch` with configs/accelerate/cpu-2proc.yaml sets for each rank
        no_deepspeed_left.setenv("ACCELERATE_USE_DEEPSPEED", "true")
        no_deepspeed_left.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", config)
    with pytest.raises(ValueError, match=r"use_vllm with DeepSpeed expert parallelism \(AutoEP\) is not supported: "
                                         r"TRL syncs weights to vLLM one parameter at a time"):
        parse(tmp_path, "--use_vllm", "true", *extra)
    assert parse(tmp_path, "--use_vllm", "false", *extra).deepspeed_plugin is not None  # transformers: accepted
    ulysses = parse(tmp_path, "--use_vllm", "true", "--deepspeed", str(REPO_ROOT / "configs/deepspeed/zero3-sp.json"))
    assert ulysses.use_vllm  # ZeRO-3 without expert parallelism: TRL's own vLLM path
