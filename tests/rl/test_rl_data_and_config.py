"""RL rows and recipe values: a bad row or value is one located line; what a row may hold goes through."""

import json

import pytest
from trl import ModelConfig, ScriptArguments, TrlParser

from align.data.sources import DataError, DataReport, Source
from align.rl.config import KlearGRPOConfig
from align.rl.data import read_prompt_rows


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
