"""Every YAML and JSON under configs/ loads and is valid for what reads it (no folder skipped)."""

import json
from pathlib import Path

import pytest
import yaml
from trl import ModelConfig, ScriptArguments, TrlParser

from align.models.klear import KlearConfig
from align.rl.config import KlearGRPOConfig
from align.training.autoep import check_expert_parallel_config
from align.training.config import KlearDPOConfig, KlearSFTConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
ALL_FILES = sorted(p for p in CONFIGS.rglob("*") if p.suffix in {".yaml", ".yml", ".json"})
STAGE_CONFIGS = {"sft": KlearSFTConfig, "dpo": KlearDPOConfig, "rl": KlearGRPOConfig}


def test_every_config_file_is_seen():
    folders = {p.parent.name for p in ALL_FILES}
    assert {"sft", "accelerate", "deepspeed"} <= folders
    assert all(p.parent.name in {"sft", "dpo", "rl", "accelerate", "deepspeed"} for p in ALL_FILES), ALL_FILES


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_loads_and_is_valid(path, tmp_path):
    if path.suffix == ".json":
        check_expert_parallel_config(json.loads(path.read_text()), KlearConfig())
        return
    config = yaml.safe_load(path.read_text())
    assert isinstance(config, dict) and config
    if path.parent.name in STAGE_CONFIGS:
        assert path.read_text().startswith("#") and "-m align." in path.read_text().split("\n\n")[0], (
            "a recipe's header holds the command that runs it"
        )
        parser = TrlParser((ScriptArguments, STAGE_CONFIGS[path.parent.name], ModelConfig))
        # A GPU recipe's bf16 validates only on a GPU (use_cpu is added for it); CPU recipes, bf16 ones
        # included, and every other key, unknown ones too, are checked as they are
        on_cpu = [] if config.get("use_cpu") else ["--use_cpu", "true"]
        training_args = parser.parse_args_and_config(["--config", str(path), *on_cpu, "--output_dir", str(tmp_path)])[1]
        if path.stem == "tiny":  # CI's recipes are bf16, like the real ones
            assert training_args.bf16 and config["dtype"] == "bfloat16"
    elif path.parent.name == "accelerate":
        ds_file = CONFIGS.parent / config["deepspeed_config"]["deepspeed_config_file"]
        assert ds_file.exists(), f"{path} points at a missing {ds_file}"


def test_unknown_recipe_keys_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: x\nlearning_rte: 1.0e-5\n")
    parser = TrlParser((ScriptArguments, KlearSFTConfig, ModelConfig))
    with pytest.raises(ValueError, match="learning_rte"):
        parser.parse_args_and_config(["--config", str(bad), "--use_cpu", "true", "--bf16", "false",
                                      "--output_dir", str(tmp_path)])


def test_expert_parallel_config_that_would_rescale_routing_is_refused():
    with pytest.raises(ValueError, match="routed_scaling_factor"):
        check_expert_parallel_config({"expert_parallel": {"enabled": True, "autoep_size": 2}}, KlearConfig())
