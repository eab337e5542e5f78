"""align.serve's pure parts: the `vllm serve` command line, bad checkpoints, the vLLM version check,
and the answer engine chosen by `auto`. No vLLM engine starts here."""

import http.server
import importlib.util
import threading

import pytest

from align.judging import answers
from align.judging.answers import TransformersBackend, local_backend
from align.common.ports import free_loopback_port
from align.serve.environment import (VERSION_OVERRIDE_ENV, check_vllm_version, cpu_build, thread_binding,
                                     vllm_installed)
from align.serve.server import (ServeError, VLLMServer, check_checkpoint, main, parse_args, resolve_expert_parallel,
                                serve_command)
from tests.markers import needs_vllm, needs_vllm_cpu_build


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
    if vllm_installed():
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


def test_each_cpu_worker_gets_its_own_contiguous_share_of_the_cores():
    assert thread_binding(2, {0, 1}) == "0|1"
    assert thread_binding(2, range(16)) == "0-7|8-15"
    assert thread_binding(3, [0, 1, 2, 5, 6, 7, 8]) == "0-2|5-6|7-8"  # 7 cores: the first worker takes the extra one
    with pytest.raises(ValueError, match="4 tensor-parallel CPU workers need at least 4 cores; this process may use 2"):
        thread_binding(4, {0, 1})


@needs_vllm_cpu_build
def test_the_cpu_build_serves_tensor_parallel_alone_and_says_why():
    assert resolve_expert_parallel(1, None) == (False, None)
    for asked in (None, True):
        expert_parallel, note = resolve_expert_parallel(2, asked)
        assert not expert_parallel
        assert note == ("vLLM's CPU build cannot run expert parallelism (its fused-MoE experts take no expert map): "
                        "serving tensor parallel alone")
    assert resolve_expert_parallel(2, False) == (False, None)


@needs_vllm_cpu_build
def test_a_head_size_the_cpu_build_lacks_is_refused_at_start_in_one_line(tiny_klear_dir, capsys):
    assert main([str(tiny_klear_dir), "--port", "0"]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (f"align.serve: {tiny_klear_dir}: vLLM's CPU attention has no kernel for head_dim 16; "
                     "it cannot be served here")


@needs_vllm
def test_a_port_another_http_server_answers_on_is_refused_in_one_line(tmp_path, capsys):
    """Before: a JSONDecodeError from reading that server's /v1/models as vLLM's."""
    (tmp_path / "config.json").write_text('{"hidden_size": 128, "num_attention_heads": 2}')  # head_dim 64
    port = free_loopback_port("127.0.0.1")
    other = http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        assert main([str(tmp_path), "--port", str(port)]) == 1
    finally:
        other.shutdown()
        other.server_close()
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"align.serve: 127.0.0.1:{port} is already in use (")
    assert error.endswith("choose another --port, or 0 for any free one") and "\n" not in error


@needs_vllm
@pytest.mark.parametrize("flag, value, message", [
    ("--port", "70000", "--port must be between 0 (any free port) and 65535, not 70000"),  # was bind()'s OverflowError
    ("--port", "-1", "--port must be between 0 (any free port) and 65535, not -1"),
    ("--tensor-parallel-size", "0", "--tensor-parallel-size must be at least 1, not 0"),  # was vLLM's pydantic traceback
])
def test_a_port_or_size_out_of_range_is_one_line_before_vllm_starts(tmp_path, capsys, flag, value, message):
    (tmp_path / "config.json").write_text('{"hidden_size": 128, "num_attention_heads": 2}')  # head_dim 64
    assert main([str(tmp_path), flag, value]) == 1
    assert capsys.readouterr().err == f"align.serve: {message}\n"
