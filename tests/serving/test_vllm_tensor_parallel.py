"""`python -m align.serve CKPT --tensor-parallel-size 2` on the CPU build: two worker processes, each
bound to its own cores by align.serve, expert parallelism left off (said in one line), and greedy
answers equal transformers' (fp32; each rank adds half of every row- or column-split product, and
an all-reduce adds the halves: another order of the same sums)."""

from types import SimpleNamespace

import pytest

from align.judging.answers import EndpointBackend
from align.rl.vllm_server import check_vllm_server

from serving_support import MAX_NEW_TOKENS, serve
from tests.markers import needs_vllm_cpu_build

pytestmark = [
    pytest.mark.slow,
    needs_vllm_cpu_build,
]


@pytest.fixture(scope="module")
def served_tp2(sft_klear, tmp_path_factory):
    yield from serve(sft_klear[0], tmp_path_factory.mktemp("align-serve-tp2") / "serve.log",
                     "--tensor-parallel-size", "2")


def test_two_cpu_workers_answer_as_transformers_does(served_tp2, conversations, transformers_answers):
    log = served_tp2["log"].read_text()
    assert log.splitlines()[0] == ("align.serve: vLLM's CPU build cannot run expert parallelism (its fused-MoE "
                                   "experts take no expert map): serving tensor parallel alone")
    assert "--enable-expert-parallel" not in log and "tensor_parallel_size=2" in log
    assert "Worker_TP0" in log and "Worker_TP1" in log
    assert "VLLM_CPU_OMP_THREADS_BIND=" in log and "auto_setup=False" in log  # align.serve's binding, not "auto"
    backend = EndpointBackend(served_tp2["base_url"], served_tp2["model"], concurrency=4)
    answers = backend.generate(conversations, temperature=0.0, max_new_tokens=MAX_NEW_TOKENS, n=1, seed=0)
    assert [a[0] for a in answers] == transformers_answers


def test_align_rl_refuses_a_server_started_without_rl_weight_sync(served_tp2):
    """The suite's one plain `align.serve` (test_vllm_serving.py's server has --rl-weight-sync): align.rl's
    server-mode check names what is missing in one line."""
    url = served_tp2["base_url"].removesuffix("/v1")
    with pytest.raises(ValueError) as error:
        check_vllm_server(SimpleNamespace(vllm_server_base_url=url, vllm_server_timeout=10.0, use_cpu=True))
    assert str(error.value) == (f"vllm_mode server: the vLLM server at {url} has no development endpoints, which TRL's "
                                "weight sync uses: start it with `python -m align.serve CHECKPOINT --rl-weight-sync` "
                                "(it sets VLLM_SERVER_DEV_MODE=1)")
