"""Every YAML and JSON under configs/ loads and is valid for what reads it (no folder skipped)."""

import json
from pathlib import Path

import pytest
import yaml
from trl import ModelConfig, ScriptArguments, TrlParser

from align.iterate.config import KlearIterateConfig
from align.models.klear import KlearConfig
from align.rl.config import KlearGRPOConfig
from align.training.autoep import check_expert_parallel_config
from align.dpo.config import KlearDPOConfig
from align.sft.config import KlearSFTConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
ALL_FILES = sorted(p for p in CONFIGS.rglob("*") if p.suffix in {".yaml", ".yml", ".json"})
STAGE_CONFIGS = {"sft": KlearSFTConfig, "dpo": KlearDPOConfig, "rl": KlearGRPOConfig, "iterate": KlearIterateConfig}


def test_every_config_file_is_seen():
    folders = {p.parent.name for p in ALL_FILES}
    assert {"sft", "accelerate", "deepspeed"} <= folders
    assert all(p.parent.name in {"sft", "dpo", "rl", "iterate", "accelerate", "deepspeed"} for p in ALL_FILES), ALL_FILES


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


# ----- recipe sections, parsed once with the recipe -----

JUDGE_TYPO = '{"benchmark": ["mt_bench"]}'  # `benchmarks`, misspelled


def parse_sft(*argv):
    return TrlParser((ScriptArguments, KlearSFTConfig, ModelConfig)).parse_args_and_config(
        ["--config", str(CONFIGS / "sft/tiny.yaml"), *argv])


def test_each_section_is_one_typed_object_built_with_the_recipe(tmp_path):
    from align.data.hygiene import DataHygiene
    from align.judging.config import AfterTrainingOptions, JudgeSection

    _, args, _ = parse_sft("--output_dir", str(tmp_path), "--decontaminate", "mt_bench",
                           "--judge", '{"questions_per_category": 1, "alignbench_dir": "/ab", "enabled": false}')
    assert args.judge_section == JudgeSection(AfterTrainingOptions(questions_per_category=1, alignbench_dir="/ab",
                                                                   enabled=False), {})
    assert not args.judge_section.enabled
    # a recipe with a judge section drops contaminated rows unless it says otherwise; AlignBench's
    # directory comes from the judge section when data cleaning names none
    assert args.data_hygiene == DataHygiene(decontaminate=("mt_bench",), action="drop", alignbench_dir="/ab")
    _, args, _ = parse_sft("--output_dir", str(tmp_path), "--judge", "null", "--dedup", "near")
    assert args.judge_section is None
    assert args.data_hygiene == DataHygiene(action="report", dedup="near")


@pytest.mark.parametrize("judge, message", [
    (JUDGE_TYPO, "judge config: unknown key(s) ['benchmark']"),
    ('{"benchmarks": ["mtbench"]}', "unknown benchmark(s) ['mtbench']"),
    ('{"concurrency": 0, "base_url": "http://127.0.0.1:1/v1", "model": "m"}', "concurrency must be >= 1"),
    ('{"base_url": "localhost:8000", "model": "m"}', "must be an http:// or https:// URL"),
    ("{benchmarks: [mt_bench]}", "judge: not a JSON object"),
])
def test_a_bad_judge_section_fails_when_the_recipe_is_parsed(judge, message, tmp_path, monkeypatch):
    for name in ("JUDGE_BASE_URL", "JUDGE_MODEL", "OPENAI_BASE_URL", "JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError) as error:
        parse_sft("--output_dir", str(tmp_path), "--judge", judge)
    assert message in str(error.value)


def test_a_judge_typo_is_reported_before_any_data_is_read(tmp_path, monkeypatch, capsys):
    """The CLI, with a judge typo in the recipe file and a training file that does not exist: the judge's
    error is the one line (had the data been read first, the missing file would be), and nothing is written.
    The order is shown by which error wins, not by a clock (no timed assertions in tests)."""
    from align.sft.__main__ import main as sft_main
    from align.training.cli import run_stage

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((CONFIGS / "sft/tiny.yaml").read_text() + f"judge: {JUDGE_TYPO}\n")
    monkeypatch.delenv("KLEAR_DEBUG", raising=False)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        run_stage("align.sft", sft_main, KlearSFTConfig, ["--config", str(recipe), "--output_dir", str(out),
                                                          "--dataset_name", str(tmp_path / "missing.jsonl")])
    assert exit_.value.code == 1
    line, = capsys.readouterr().err.splitlines()
    assert "judge config: unknown key(s) ['benchmark']" in line and "missing.jsonl" not in line
    assert not out.exists()
