"""`vllm_mode: server` (align.rl.vllm_server): refused without CUDA when the recipe is parsed, one line and nothing
loaded; the generator `python -m align.serve --rl-weight-sync` starts is the one `trl vllm-serve` would; a server
that does not answer is named before the policy loads.

A live CPU server is not started here (its start-up alone took 51-111 s on the shared 2-core machine): the vLLM
server tests/serving/test_vllm_serving.py already starts runs with --rl-weight-sync, and TRL's `VLLMClient` and
`check_vllm_server` are tested against it there (a plain server failing the check: test_vllm_tensor_parallel.py).
The weight sync itself needs CUDA: the GPU check's `rl_vllm` section runs the whole path."""

import json
import socket
from types import SimpleNamespace

import pytest

from align.rl.config import KlearGRPOConfig
from align.rl.vllm_server import check_vllm_server
from tests.distributed import REPO_ROOT


def test_server_mode_without_cuda_stops_in_one_line_before_anything_loads(tmp_path, capsys, monkeypatch):
    from align.rl.__main__ import main as rl_main
    from align.training.cli import run_stage

    monkeypatch.delenv("KLEAR_DEBUG", raising=False)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        run_stage("align.rl", rl_main, KlearGRPOConfig,
                  ["--config", str(REPO_ROOT / "configs/rl/tiny.yaml"), "--use_cpu", "true", "--use_vllm", "true",
                   "--vllm_mode", "server", "--output_dir", str(out), "--dataset_name", str(tmp_path / "missing.jsonl"),
                   "--model_name_or_path", str(tmp_path / "none")])
    assert exit_.value.code == 1
    line, = capsys.readouterr().err.splitlines()
    assert ("vllm_mode server needs a CUDA device for the trainer: TRL 1.16 syncs the policy's weights into the "
            "server over vLLM's NCCL weight-transfer engine, and vLLM 0.32 has no weight-transfer engine without CUDA"
            in line)
    assert "missing.jsonl" not in line and not out.exists()


def test_rl_weight_sync_serves_what_trl_vllm_serve_adds(tmp_path):
    """Every setting `trl vllm-serve` imposes on `vllm serve` for its trainers (its own command builder is the
    expectation), bar `--enable-scale-out` (multimodal prompts only), and vLLM's development endpoints."""
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    from align.serve.server import VLLMServer, parse_args

    trl_command = build_command(ScriptArguments(model="m"))
    imposed = trl_command[trl_command.index("--weight-transfer-config"):]
    assert imposed[0::2] == ["--weight-transfer-config", "--logprobs-mode", "--max-logprobs"]  # what we mirror
    checkpoint = tmp_path / "klear"
    checkpoint.mkdir()  # a config vLLM's CPU build has an attention kernel for; the server is not started
    (checkpoint / "config.json").write_text(json.dumps({"hidden_size": 256, "num_attention_heads": 4}))
    server = VLLMServer(checkpoint, rl_weight_sync=True, extra_args=["--dtype", "float32"])
    ours = server.command
    for flag, value in zip(imposed[0::2], imposed[1::2]):
        assert ours[ours.index(flag) + 1] == value
    assert ours[-2:] == ["--dtype", "float32"]  # the user's options still come last, so they win
    assert server.env["VLLM_SERVER_DEV_MODE"] == "1"
    plain = VLLMServer(checkpoint)
    assert "--weight-transfer-config" not in plain.command and "VLLM_SERVER_DEV_MODE" not in plain.env
    assert parse_args([str(checkpoint), "--rl-weight-sync"])[0].rl_weight_sync


def test_a_server_that_does_not_answer_is_named_with_the_command_that_starts_one():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = sock.getsockname()[1]
        args = SimpleNamespace(vllm_server_base_url=f"http://127.0.0.1:{port}/", vllm_server_timeout=1.0)
        with pytest.raises(ValueError) as error:
            check_vllm_server(args, retry_interval_s=0.2)
    message = str(error.value)
    assert message.startswith(f"vllm_mode server: no vLLM server answers at http://127.0.0.1:{port} (")
    assert "waited vllm_server_timeout 1 s" in message
    assert "`python -m align.serve CHECKPOINT --rl-weight-sync --port PORT`" in message
    assert "\n" not in message
