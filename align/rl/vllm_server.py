"""`use_vllm: true, vllm_mode: server`: rollouts from a separate vLLM server through TRL's `VLLMClient`, the policy's
weights pushed into it before each generation batch (`align.rl.vllm_sync.ServerSync`) over the server's
weight-transfer backend: vLLM's `nccl` (TRL's own path, CUDA on both sides and distinct GPUs) or our `gloo`
(`align.serve.weight_transfer`: any device, e.g. a CPU trainer, or a trainer on the server's own GPU, where NCCL
refuses to run), which `align.rl.vllm_client.KlearVLLMClient` speaks.

    python -m align.serve CHECKPOINT --rl-weight-sync --port 8000    # the generator, on GPUs of its own
    accelerate launch ... -m align.rl --config RECIPE --use_vllm true --vllm_mode server \\
        --vllm_server_base_url http://127.0.0.1:8000

`check_vllm_server` runs before the policy loads, ending the run in one line where the server does not answer
within `vllm_server_timeout`, lacks vLLM's development endpoints (TRL's weight updates and prefix-cache reset live
there), has no weight-transfer engine this trainer can use (nccl without CUDA here), or returns log-probabilities
before temperature (TRL compares them with the trainer's for its importance-sampling correction). TRL would find
the first three only after the policy is loaded, or not at all for the last.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from align.serve import weight_transfer

SERVE_COMMAND = "python -m align.serve CHECKPOINT --rl-weight-sync"


def server_mode(args) -> bool:
    return bool(args.use_vllm) and args.vllm_mode == "server"


def colocate_mode(args) -> bool:
    return bool(args.use_vllm) and args.vllm_mode == "colocate"


def server_url(args) -> str:
    """The server's base URL as TRL's `VLLMGeneration` forms it."""
    if args.vllm_server_base_url:
        return args.vllm_server_base_url.rstrip("/")
    return f"http://{args.vllm_server_host}:{args.vllm_server_port}"


def check_vllm_server(args, retry_interval_s: float = 2.0) -> dict:
    """The server's configuration (`/server_info`), once it answers as TRL's server mode needs; else one line."""
    url = server_url(args)
    deadline = time.monotonic() + args.vllm_server_timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=10):
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            if time.monotonic() >= deadline:
                reason = getattr(error, "reason", error)
                raise ValueError(
                    f"vllm_mode server: no vLLM server answers at {url} ({reason}; waited vllm_server_timeout "
                    f"{args.vllm_server_timeout:g} s): start one for the policy's checkpoint with `{SERVE_COMMAND} "
                    "--port PORT` and give its URL as vllm_server_base_url"
                ) from None
            time.sleep(retry_interval_s)
    try:
        with urllib.request.urlopen(f"{url}/server_info?config_format=json", timeout=30) as response:
            info = json.load(response)["vllm_config"]
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise ValueError(
                f"vllm_mode server: the vLLM server at {url} has no development endpoints, which TRL's weight sync "
                f"uses: start it with `{SERVE_COMMAND}` (it sets VLLM_SERVER_DEV_MODE=1)"
            ) from None
        raise ValueError(f"vllm_mode server: {url}/server_info answered HTTP {error.code}") from None
    check_server_info(info, url, trainer_has_cuda=not args.use_cpu and _cuda_available())
    return info


def check_server_info(info: dict, url: str, trainer_has_cuda: bool) -> None:
    """A `/server_info` configuration TRL's server mode can train with (a weight-transfer engine this trainer can
    join, log-probabilities after temperature), or a `ValueError` saying how to start the server."""
    backend = (info.get("weight_transfer_config") or {}).get("backend")
    if backend not in ("nccl", weight_transfer.BACKEND):
        found = f"backend {backend!r}" if backend else "none"
        raise ValueError(
            f"vllm_mode server: the vLLM server at {url} has no weight-transfer engine the trainer can sync with "
            f"({found}): start it with `{SERVE_COMMAND}`"
        )
    if backend == "nccl" and not trainer_has_cuda:
        raise ValueError(
            f"vllm_mode server: the vLLM server at {url} syncs weights over NCCL, which needs a CUDA device for the "
            f"trainer: start it with `{SERVE_COMMAND} --rl-weight-sync-backend gloo` (docs/rl.md, Generation)"
        )
    logprobs_mode = info.get("model_config", {}).get("logprobs_mode")
    if logprobs_mode != "processed_logprobs":
        raise ValueError(
            f"vllm_mode server: the vLLM server at {url} returns {logprobs_mode} log-probabilities; TRL compares "
            f"them with the trainer's after temperature: start it with `{SERVE_COMMAND}` (--logprobs-mode "
            "processed_logprobs)"
        )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
