"""The training hook: answer, judge, report, with a configured judge and with none."""

import json
import shlex
from pathlib import Path

import pytest
from transformers import AutoConfig

from align.data.benchmarks import DataError
from align.judging.__main__ import main
from align.judging.answers import local_backend
from align.judging.config import AfterTrainingOptions, JudgeConfigError, JudgeSection
from align.judging.saved_model import (
    LOCAL_JUDGE_WARNING,
    bf16_weight_bytes,
    check_answering_fits,
    check_judge_config,
    judge_saved_model,
    training_data_facts,
)
from align.judging.report import _training_data_blocks
from align.models.klear.configuration_klear import KlearConfig
from align.serve.environment import cpu_build, vllm_installed


def test_bad_or_disabled_config(tmp_path, monkeypatch):
    for name in ("JUDGE_BASE_URL", "JUDGE_MODEL", "OPENAI_BASE_URL", "JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="unknown key"):
        judge_saved_model(tmp_path, tmp_path, {"benchmark": ["mt_bench"]})
    with pytest.raises(ValueError, match="unknown benchmark"):
        check_judge_config({"benchmarks": ["mtbench"]})
    with pytest.raises(ValueError, match="baseline_answers"):
        check_judge_config({"mode": "pairwise"})
    with pytest.raises(JudgeConfigError, match="JUDGE_MODEL"):
        check_judge_config({"base_url": "http://127.0.0.1:1/v1"})
    assert "meaningless" in check_judge_config(None)
    assert check_judge_config({"base_url": "http://127.0.0.1:1/v1", "model": "m"}) == "judge m at http://127.0.0.1:1/v1"
    assert judge_saved_model(tmp_path, tmp_path, {"enabled": False}) is None
    assert judge_saved_model(tmp_path, tmp_path, '{"enabled": false}') is None  # JSON from a command line
    with pytest.raises(ValueError, match="not a JSON object"):
        check_judge_config("{enabled: no}")


DECONTAMINATION = {"checked_against": ["mt_bench", "alignbench"], "action": "drop",
                   "flagged": {"mt_bench": 3, "alignbench": 0}, "dropped": {"mt_bench": 3, "alignbench": 0}}


def test_with_a_configured_judge(tiny_klear_dir, tmp_path, scripted_judge, monkeypatch):
    monkeypatch.delenv("JUDGE_BASE_URL", raising=False)
    model_dir = tmp_path / "sft-output"  # the saved model, with the data card the stage wrote beside it
    model_dir.mkdir()
    for path in tiny_klear_dir.iterdir():
        (model_dir / path.name).symlink_to(path)
    card = {"rows_used": 120, "decontamination": {**DECONTAMINATION, "examples": [{"row": "train.jsonl:7"}]}}
    (model_dir / "data_card.json").write_text(json.dumps(card))
    config = {"benchmarks": ["mt_bench"], "questions_per_category": 1, "max_new_tokens": 6, "answer_engine": "transformers",
              "base_url": scripted_judge.base_url, "model": "scripted-judge", "model_name": "sft-tiny"}
    report = judge_saved_model(model_dir, tmp_path / "judge", config)
    assert report == tmp_path / "judge" / "report.md"
    summary = json.loads((tmp_path / "judge" / "summary.json").read_text())
    assert summary["benchmarks"]["mt_bench"]["sft-tiny"]["n_items"] == 16
    assert summary["warning"] is None and summary["subset"] == {"questions_per_category": 1}
    assert (tmp_path / "judge" / "answers" / "mt_bench" / "sft-tiny.jsonl").is_file()
    assert summary["training_data"] == {"data_card": str(model_dir / "data_card.json"), "decontamination": DECONTAMINATION}
    text = report.read_text()
    assert "Training data checked for contamination against mt_bench, alignbench (matching rows were dropped" in text
    assert "| mt_bench | 3 | 3 |" in text and "| alignbench | 0 | 0 |" in text
    assert "contamination against mt_bench, alignbench" in (tmp_path / "judge" / "report.html").read_text()


def test_a_data_card_without_a_check_is_reported_and_a_bad_one_named(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    assert training_data_facts(model) is None  # no card: nothing to say
    (model / "data_card.json").write_text(json.dumps({"rows_read": 120}))
    facts = training_data_facts(model)
    assert facts == {"data_card": str(model / "data_card.json"), "decontamination": None}
    (warning,) = _training_data_blocks(facts)
    assert warning[0] == "warn" and "was not checked for contamination" in warning[1]
    (model / "data_card.json").write_text(json.dumps({"decontamination": {**DECONTAMINATION, "dropped": 3}}))
    with pytest.raises(DataError, match=r"data_card.json: field 'decontamination.dropped' must be a dict, got 3"):
        training_data_facts(model)


def test_a_model_too_big_for_one_device_is_refused_at_startup(tiny_klear_dir, monkeypatch):
    monkeypatch.delenv("ALIGN_ANSWER_ENGINE", raising=False)
    klear_46b = KlearConfig()  # Klear-46B-A2.5B's shape: 46.2B parameters, 92.4 GB in bf16
    on_transformers = AfterTrainingOptions(answer_engine="transformers")
    with pytest.raises(ValueError, match=r"bf16 weights \(92.4 GB\) do not fit GPU 0 \(A100 80GB\) \(80.0 GB\)"):
        check_answering_fits(on_transformers, klear_46b, ("GPU 0 (A100 80GB)", 80 * 10**9))
    engine, answers = check_answering_fits(on_transformers, klear_46b, ("GPU 0 (H200)", 141 * 10**9))
    assert engine == "transformers" and answers.endswith("(answer_engine: transformers; 92.4 of 141.0 GB)")
    elsewhere = AfterTrainingOptions(answer_engine="transformers", answer_base_url="http://10.0.0.5:8000/v1")
    assert check_answering_fits(elsewhere, klear_46b, ("GPU 0 (A100 80GB)", 80 * 10**9)) == (
        None, "answers from http://10.0.0.5:8000/v1")
    vllm = AfterTrainingOptions(answer_engine="vllm")
    if vllm_installed():
        assert check_answering_fits(vllm, klear_46b, ("GPU 0 (A100 80GB)", 80 * 10**9)) == (
            "vllm", "answers with vllm (answer_engine: vllm)")
    else:
        with pytest.raises(ValueError, match="vLLM is not installed"):
            check_answering_fits(vllm, klear_46b, ("GPU 0 (A100 80GB)", 80 * 10**9))
    # at a stage's startup, with this machine's own device: the tiny model fits and is described
    tiny = AutoConfig.from_pretrained(tiny_klear_dir)
    described = check_judge_config({"base_url": "http://127.0.0.1:1/v1", "model": "m", "answer_engine": "transformers"},
                                   model_config=tiny)
    assert described.startswith("judge m at http://127.0.0.1:1/v1; answers with transformers on ")


def test_the_size_check_runs_under_an_active_zero3_config(tiny_klear_dir):
    """A ZeRO-3 stage checks its judge before the policy loads, with DeepSpeed's config already active
    (what `make demo`'s DPO does): the meta-device count must not enter zero.Init."""
    from transformers import AutoModelForCausalLM
    from transformers.integrations import HfDeepSpeedConfig
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

    tiny = AutoConfig.from_pretrained(tiny_klear_dir)
    expected = 2 * sum(p.numel() for p in AutoModelForCausalLM.from_config(tiny).parameters())
    zero3 = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    try:
        assert is_deepspeed_zero3_enabled()
        assert bf16_weight_bytes(tiny) == expected
    finally:
        unset_hf_deepspeed_config()
    del zero3


def test_tensor_parallel_size_is_checked_with_the_recipe_and_the_engine_is_named_once(tiny_klear_dir, monkeypatch):
    monkeypatch.delenv("ALIGN_ANSWER_ENGINE", raising=False)
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(ValueError, match=f"tensor_parallel_size must be an integer >= 1, got {bad!r}"):
            JudgeSection.parse({"tensor_parallel_size": bad})
    with pytest.raises(ValueError, match="tensor_parallel_size sizes the local vLLM engine, but answers come from"):
        JudgeSection.parse({"tensor_parallel_size": 2, "answer_base_url": "http://10.0.0.5:8000/v1"})
    with pytest.raises(ValueError, match="tensor_parallel_size > 1 needs answer_engine vllm"):
        JudgeSection.parse({"tensor_parallel_size": 2, "answer_engine": "transformers"})
    section = JudgeSection.parse({"tensor_parallel_size": 2, "enabled": True})
    assert section.options.tensor_parallel_size == 2
    # auto, told the model before it is saved: the same engine the answering will use, said once
    tiny = AutoConfig.from_pretrained(tiny_klear_dir)  # head_dim 16: vLLM's CPU build has no kernel for it
    auto = AfterTrainingOptions()
    if vllm_installed() and cpu_build():
        engine, answers = check_answering_fits(auto, tiny)
        assert engine == "transformers" and answers.startswith("answers with transformers on ")
        assert "(vLLM's CPU attention has no kernel for head_dim 16;" in answers
        with pytest.raises(ValueError, match="tensor_parallel_size 2 needs the vLLM engine, but transformers "
                                             "answers here \\(vLLM's CPU attention has no kernel for head_dim 16\\)"):
            check_answering_fits(section.options, tiny)
        wide = AutoConfig.from_pretrained(tiny_klear_dir, head_dim=64)
        assert check_answering_fits(section.options, wide) == (
            "vllm", "answers with vllm, tensor parallel 2 (vLLM is installed)")
    with pytest.raises(ValueError, match="tensor parallel size 2 needs the vLLM engine"):
        local_backend(tiny_klear_dir, engine="transformers", tensor_parallel_size=2)


def readme_try_command() -> list[str]:
    """The README's "try it without an endpoint" command, as written (continuation lines joined)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    text = readme.split("To try it without an endpoint", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    words = shlex.split(text.replace("\\\n", " "))
    assert words[:4] == ["python", "-m", "align.judging", "evaluate"]
    return words[3:]


@pytest.mark.slow
def test_the_readmes_try_without_an_endpoint_runs_as_written(tiny_klear_dir, tmp_path, monkeypatch, caplog):
    """The model judges itself through a local transformers serve; the log says so first, with the count."""
    for name in ("JUDGE_BASE_URL", "OPENAI_BASE_URL", "JUDGE_API_KEY", "OPENAI_API_KEY", "ALIGN_ANSWER_ENGINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    model_dir = tmp_path / "runs" / "sft-tiny"  # the README's model: a tiny Klear (head_dim 16)
    model_dir.mkdir(parents=True)
    for path in tiny_klear_dir.iterdir():  # the session's checkpoint stays clean of this run's files
        (model_dir / path.name).symlink_to(path)
    code = main(readme_try_command())
    assert code in (0, 3)  # 3: a tiny model rarely writes "[[rating]]"; the report is written either way
    log = caplog.text
    (line,) = [line for line in log.splitlines() if "judging runs/sft-tiny: " in line]
    assert "NO JUDGE CONFIGURED: the model will judge its own answers" in line and "meaningless" in line
    assert "8 mt_bench questions (16 answers, 16 judgments)" in line
    engine = "transformers" if not vllm_installed() or cpu_build() else "vllm"
    assert f"answers with {engine}" in line and "answering with" not in log and "answers from vLLM" not in log
    out = tmp_path / "runs" / "sft-tiny" / "judge-try"
    text = (out / "report.md").read_text()
    assert text.splitlines()[2].startswith("> **Warning:** No judge endpoint was configured")
    assert "These scores mean nothing" in text and "These scores mean nothing" in LOCAL_JUDGE_WARNING
    summary = json.loads((out / "summary.json").read_text())
    assert summary["warning"] == LOCAL_JUDGE_WARNING
    assert summary["judge"]["base_url"].startswith("http://127.0.0.1:")
    assert summary["counts"]["judgments"] == 16 and summary["counts"]["api_calls"] == 16
    assert (out / "local_judge_server.log").is_file()
