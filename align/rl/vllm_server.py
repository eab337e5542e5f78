"""`use_vllm: true, vllm_mode: server`: rollouts from a separate vLLM server through TRL's `VLLMClient`, the policy's
weights pushed into it over vLLM's NCCL weight-transfer engine before each generation batch (TRL's own path:
`trl/generation/vllm_generation.py`, `VLLMGeneration.sync_weights`).

    python -m align.serve CHECKPOINT --rl-weight-sync --port 8000    # the generator, on GPUs of its own
    accelerate launch ... -m align.rl --config RECIPE --use_vllm true --vllm_mode server \\
        --vllm_server_base_url http://127.0.0.1:8000

Both checks here run before any model loads, each ending the run in one line:

- `check_server_mode` (when the recipe is parsed): the trainer needs a CUDA device. TRL 1.16's
  `VLLMClient.init_communicator` joins the server's weight-transfer group and raises NotImplementedError on any
  other device (trl/generation/vllm_client.py:756), and vLLM 0.32 has no engine that moves weights without CUDA
  (vllm/distributed/weight_transfer/factory.py:222-258 registers nccl, ipc, sparse_nccl, sharded_rdt, nccl_m2n and
  modelexpress: NCCL, CUDA IPC handles, Ray with NIXL on CUDA streams, and an external NIXL package).
- `check_vllm_server` (at start): the server answers within `vllm_server_timeout`, exposes vLLM's development
  endpoints (TRL's weight updates and prefix-cache reset live there), has the NCCL weight-transfer engine, and
  returns log-probabilities after temperature (TRL compares them with the trainer's for its importance-sampling
  correction). TRL would find the first three only after the policy is loaded, or not at all for the last.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

SERVE_COMMAND = "python -m align.serve CHECKPOINT --rl-weight-sync"


def server_mode(args) -> bool:
    return bool(args.use_vllm) and args.vllm_mode == "server"


def colocate_mode(args) -> bool:
    return bool(args.use_vllm) and args.vllm_mode == "colocate"


def check_server_mode(args) -> None:
    """Refuse `vllm_mode: server` where the trainer has no CUDA device (`use_cpu`, or none visible)."""
    import torch

    if server_mode(args) and (args.use_cpu or not torch.cuda.is_available()):
        raise ValueError(
            "vllm_mode server needs a CUDA device for the trainer: TRL 1.16 syncs the policy's weights into the server "
            "over vLLM's NCCL weight-transfer engine, and vLLM 0.32 has no weight-transfer engine without CUDA "
            "(docs/rl.md, Generation). On CPU, generate with vllm_mode: colocate or use_vllm: false"
        )


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
    transfer = info.get("weight_transfer_config") or {}
    if transfer.get("backend") != "nccl":
        found = f"backend {transfer['backend']!r}" if transfer else "none"
        raise ValueError(
            f"vllm_mode server: the vLLM server at {url} has no NCCL weight-transfer engine ({found}), the one TRL "
            f"1.16 syncs weights with: start it with `{SERVE_COMMAND}` (--weight-transfer-config "
            "'{\"backend\": \"nccl\"}')"
        )
    logprobs_mode = info.get("model_config", {}).get("logprobs_mode")
    if logprobs_mode != "processed_logprobs":
        raise ValueError(
            f"vllm_mode server: the vLLM server at {url} returns {logprobs_mode} log-probabilities; TRL compares "
            f"them with the trainer's after temperature: start it with `{SERVE_COMMAND}` (--logprobs-mode "
            "processed_logprobs)"
        )
    return info
