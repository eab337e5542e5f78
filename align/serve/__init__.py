"""Klear on stock vLLM: the plugin that registers it, an OpenAI-compatible server, an answer backend.

- `vllm_plugin`: vLLM's `vllm.general_plugins` entry point (registered in pyproject.toml).
- `vllm_adapter`: the one module touching vLLM internals; checks the vLLM version at import.
- `server`: `python -m align.serve CHECKPOINT` (`vllm serve` with Klear's defaults) and `VLLMServer`.
- `vllm_backend`: `VLLMBackend`, the judge's and `annotation generate`'s answer engine "vllm".
- `environment`: whether vLLM is installed, and the CPU build's memory default.

See docs/serving.md.
"""
