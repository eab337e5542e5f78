"""A tiny one-process SFT run in this process, as the training tests launch it (`configs/sft/tiny.yaml`, float32,
batch 2, a checkpoint every 2 steps); extra arguments come last, so they win."""

from trl import ModelConfig, ScriptArguments, TrlParser

from align.sft.__main__ import main as sft_main
from align.sft.config import KlearSFTConfig
from tests.conftest import REPO_ROOT


def sft(out, data, steps, *argv):
    return sft_main(*TrlParser((ScriptArguments, KlearSFTConfig, ModelConfig)).parse_args_and_config(
        ["--config", str(REPO_ROOT / "configs/sft/tiny.yaml"), "--report_to", "none", "--dataset_name", str(data),
         "--output_dir", str(out), "--max_steps", str(steps), "--logging_steps", "1", "--save_strategy", "steps",
         "--save_steps", "2", "--per_device_train_batch_size", "2", "--bf16", "false", "--dtype", "float32", *argv]))
