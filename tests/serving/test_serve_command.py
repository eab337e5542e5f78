"""align.serve's pure parts: the `vllm serve` command line, bad checkpoints, the vLLM version check,
and the answer engine chosen by `auto`. No vLLM engine starts here."""

import importlib.util

import pytest

from align.judging import answers
from align.judging.answers import TransformersBackend, local_backend
from align.serve.environment import VERSION_OVERRIDE_ENV, check_vllm_version, cpu_build
from align.serve.server import ServeError, VLLMServer, check_checkpoint, parse_args, serve_command


def test_one_device_serves_on_loopback_without_expert_parallel():
    command = serve_command("/ckpt/klear-sft", port=8123)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "8123"
    assert command[command.index("--tensor-parallel-size") + 1] == "1"
    assert command[command.index("--served-model-name") + 1] == "klear-sft"
    assert "--enable-expert-parallel" not in command


def test_eight_gpus_use_expert_parallel_unless_told_not_to():
    assert "--enable-expert-parallel" in serve_command("/ckpt/klear", tensor_parallel_size=8)
    assert "--enable-expert-parallel" not in serve_command("/ckpt/klear", tensor_parallel_size=8, expert_parallel=False)


def test_unknown_options_go_to_vllm_serve():
    args, extra = parse_args(["/ckpt/klear", "--tensor-parallel-size", "8", "--max-model-len", "8192", "--no-expert-parallel"])
    assert (args.tensor_parallel_size, args.expert_parallel, args.port) == (8, False, 8000)
    assert serve_command(args.checkpoint, extra_args=extra)[-2:] == ["--max-model-len", "8192"]


def test_a_directory_without_config_is_refused_by_name(tmp_path):
    with pytest.raises(ServeError, match=f"{tmp_path}: not a model directory"):
        check_checkpoint(tmp_path)
    if importlib.util.find_spec("vllm") is not None:
        with pytest.raises(ServeError, match="no config.json"):
            VLLMServer(tmp_path)


def test_other_vllm_versions_are_refused_unless_overridden(monkeypatch):
    check_vllm_version("0.32.0")
    check_vllm_version("0.32.0+cpu")
    monkeypatch.delenv(VERSION_OVERRIDE_ENV, raising=False)
    with pytest.raises(ImportError, match="written for vLLM 0.32.0, found 0.33.0"):
        check_vllm_version("0.33.0")
    monkeypatch.setenv(VERSION_OVERRIDE_ENV, "1")
    check_vllm_version("0.33.0")


def test_auto_engine_is_transformers_without_vllm(tiny_klear_dir, monkeypatch):
    """The fallback: with vLLM absent, `auto` answers with transformers (and still answers)."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a))
    monkeypatch.delenv(answers.ANSWER_ENGINE_ENV, raising=False)
    backend = local_backend(tiny_klear_dir, engine="auto", batch_size=2)
    assert isinstance(backend, TransformersBackend) and backend.engine == "transformers"
    assert len(answers.generate_answers([[{"role": "user", "content": "Hi"}]], backend, temperature=0.0,
                                        max_new_tokens=4)[0]) == 1


def test_answer_engine_env_forces_an_engine_and_a_bad_one_is_named(tiny_klear_dir, monkeypatch):
    monkeypatch.setenv(answers.ANSWER_ENGINE_ENV, "transformers")
    assert local_backend(tiny_klear_dir, batch_size=2).engine == "transformers"
    monkeypatch.setenv(answers.ANSWER_ENGINE_ENV, "tgi")
    with pytest.raises(ValueError, match="ALIGN_ANSWER_ENGINE='tgi': expected one of"):
        local_backend(tiny_klear_dir)


def test_auto_engine_passes_over_vllm_for_a_head_size_its_cpu_build_lacks(tiny_klear_dir, monkeypatch, caplog):
    """`make demo`'s tiny Klear (head_dim 16) still gets its answers, from transformers, and says why."""
    if not cpu_build():
        pytest.skip("vLLM's CPU build is not installed")
    monkeypatch.delenv(answers.ANSWER_ENGINE_ENV, raising=False)
    with caplog.at_level("WARNING", logger="align.judging"):
        backend = local_backend(tiny_klear_dir, engine="auto", batch_size=2)
    assert backend.engine == "transformers"
    assert "answering with transformers (vLLM's CPU attention has no kernel for head_dim 16)" in caplog.text
