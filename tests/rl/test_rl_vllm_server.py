"""`vllm_mode: server` (align.rl.vllm_server): the generator `python -m align.serve --rl-weight-sync` starts is the
one `trl vllm-serve` would, with the weight-transfer backend chosen (gloo on vLLM's CPU build, nccl on GPUs, or
named with --rl-weight-sync-backend); a server that does not answer is named before the policy loads.

A live CPU server is not started here (its start-up alone took 51-111 s on the shared 2-core machine): the one
tests/serving/test_vllm_serving.py starts runs with --rl-weight-sync, and a GPPO run in server mode trains through
it there (its last test), with TRL's `VLLMClient` and `check_vllm_server` (a plain server failing the check:
test_vllm_tensor_parallel.py)."""

import json
import socket
from types import SimpleNamespace

import pytest

from align.rl.vllm_server import check_vllm_server


def test_rl_weight_sync_serves_what_trl_vllm_serve_adds(tmp_path):
    """Every setting `trl vllm-serve` imposes on `vllm serve` for its trainers (its own command builder is the
    expectation, with its nccl backend), bar `--enable-scale-out` (multimodal prompts only), and vLLM's development
    endpoints."""
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    from align.serve.environment import cpu_build
    from align.serve.server import ServeError, VLLMServer

    trl_command = build_command(ScriptArguments(model="m"))
    imposed = trl_command[trl_command.index("--weight-transfer-config"):]
    assert imposed[0::2] == ["--weight-transfer-config", "--logprobs-mode", "--max-logprobs"]  # what we mirror
    checkpoint = tmp_path / "klear"
    checkpoint.mkdir()  # a config vLLM's CPU build has an attention kernel for; the server is not started
    (checkpoint / "config.json").write_text(json.dumps({"hidden_size": 256, "num_attention_heads": 4}))
    server = VLLMServer(checkpoint, rl_weight_sync=True, rl_weight_sync_backend="nccl",
                        extra_args=["--dtype", "float32"])
    ours = server.command
    for flag, value in zip(imposed[0::2], imposed[1::2]):
        assert ours[ours.index(flag) + 1] == value
    assert ours[-2:] == ["--dtype", "float32"]  # the user's options still come last, so they win
    assert server.env["VLLM_SERVER_DEV_MODE"] == "1"
    plain = VLLMServer(checkpoint)
    assert "--weight-transfer-config" not in plain.command and "VLLM_SERVER_DEV_MODE" not in plain.env
    auto = VLLMServer(checkpoint, rl_weight_sync=True).command  # vLLM's CPU build has no NCCL
    expected = json.dumps({"backend": "gloo" if cpu_build() else "nccl"})
    assert auto[auto.index("--weight-transfer-config") + 1] == expected
    with pytest.raises(ServeError, match="^--rl-weight-sync-backend gloo needs --rl-weight-sync$"):
        VLLMServer(checkpoint, rl_weight_sync_backend="gloo")


def test_the_backend_has_a_flag_of_its_own(tmp_path, capsys):
    """`--rl-weight-sync` takes no value, so a checkpoint after it stays the checkpoint; the backend is
    `--rl-weight-sync-backend`, refused alone (one line), and the flag's old form is named with the new one."""
    from align.serve.server import parse_args

    args, extra = parse_args(["--rl-weight-sync", "outputs/sft", "--dtype", "auto"])
    assert (args.checkpoint, args.rl_weight_sync, args.rl_weight_sync_backend, extra) == (
        "outputs/sft", True, None, ["--dtype", "auto"])
    args, _ = parse_args(["outputs/sft", "--rl-weight-sync", "--rl-weight-sync-backend", "gloo"])
    assert (args.rl_weight_sync, args.rl_weight_sync_backend) == (True, "gloo")
    for argv, error in [
        (["outputs/sft", "--rl-weight-sync-backend", "gloo"], "--rl-weight-sync-backend gloo needs --rl-weight-sync"),
        (["outputs/sft", "--rl-weight-sync", "gloo"],
         "--rl-weight-sync takes no value: name the backend with --rl-weight-sync-backend gloo"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            parse_args(argv)
        assert exit_.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1] == f"python -m align.serve: error: {error}"


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
