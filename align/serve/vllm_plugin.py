"""vLLM plugin: makes stock vLLM serve Klear checkpoints, no fork and no `--trust-remote-code`.

Registered under vLLM's `vllm.general_plugins` entry point (pyproject.toml), so vLLM runs
`register()` in each of its processes (API server, engine core, workers) once this package is
installed; `vllm serve CHECKPOINT` and `vllm.LLM(CHECKPOINT)` then find the model. Set
`VLLM_PLUGINS` to a list without `klear` to switch it off.
"""

ARCHITECTURE = "KlearMoeForCausalLM"


def register() -> None:
    """Register Klear with transformers and its architecture name with vLLM; cheap and idempotent."""
    import align  # noqa: F401  (registers the "Klear" config, model and weight conversion with transformers)
    from vllm import ModelRegistry

    # A lazy "module:class" reference: vLLM imports the adapter (and its version check) only when a
    # Klear checkpoint is loaded, not in every process that loads plugins.
    ModelRegistry.register_model(ARCHITECTURE, "align.serve.vllm_adapter:KlearMoeForCausalLM")
