"""vLLM plugin: makes stock vLLM serve Klear checkpoints, no fork and no `--trust-remote-code`.

Registered under vLLM's `vllm.general_plugins` entry point (pyproject.toml), so vLLM runs
`register()` in each of its processes (API server, engine core, workers) once this package is
installed; `vllm serve CHECKPOINT` and `vllm.LLM(CHECKPOINT)` then find the model. Set
`VLLM_PLUGINS` to a list without `klear` to switch it off.

It also registers the `gloo` weight-transfer backend (`align.serve.weight_transfer`), which a server started
with `align.serve --rl-weight-sync --rl-weight-sync-backend gloo` syncs an RL trainer's weights with.
"""

ARCHITECTURE = "KlearMoeForCausalLM"


def register() -> None:
    """Register Klear with transformers and its architecture name with vLLM, and the gloo weight-transfer
    backend; cheap and idempotent."""
    import align  # noqa: F401  (registers the "Klear" config, model and weight conversion with transformers)
    from vllm import ModelRegistry

    from align.serve.weight_transfer import BACKEND

    # A lazy "module:class" reference: vLLM imports the adapter (and its version check) only when a
    # Klear checkpoint is loaded, not in every process that loads plugins.
    ModelRegistry.register_model(ARCHITECTURE, "align.serve.vllm_adapter:KlearMoeForCausalLM")
    try:  # a vLLM without weight-transfer engines still serves Klear (the adapter's version check names it)
        from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory
    except ImportError:
        return
    try:
        WeightTransferEngineFactory.register_engine(BACKEND, "align.serve.vllm_adapter", "GlooWeightTransferEngine")
    except ValueError:  # registered already (an earlier call in this process)
        pass
