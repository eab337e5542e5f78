"""A dependency's private API is named only in that dependency's adapter module (which states the
versions it was written for and checks them at import): a grep of the whole tree, `align/`,
`annotation/`, `bench/`, `scripts/` and `tests/`, for each dependency's privates that the project uses."""

import re

from tests.conftest import REPO_ROOT

SCANNED = ("align", "annotation", "bench", "scripts", "tests")

# dependency -> (its private names and modules that the project needs, the files allowed to name them)
PRIVATES = {
    "transformers, TRL, DeepSpeed, torch": (
        r"CONFIG_MAPPING|_model_mapping|_non_persistent_buffers_set|_current_graph_task_id|_PRESET_ADAPTERS"
        r"|_precompute_ref_logps|_CHUNKED_LOGPROB|TOKEN_CHUNK_SIZE|FusedCausalLMOutput|build_shm_op"
        r"|trl\.trainer\.(utils|dpo_trainer|grpo_trainer)|trl\.models\.utils|trl\.kernels"
        r"|deepspeed\.(runtime|module_inject|checkpoint|moe)\b|deepspeed\.utils\.groups",
        {"align/training/compat.py"}),
    "datasets": (r"\._fingerprint\b", {"align/data/datasets_compat.py"}),
    # the plugin only registers names with vLLM's extension registries (models, weight-transfer backends), lazily
    "vLLM": (r"vllm\.(model_executor|v1|engine|worker|distributed|attention)\b",
             {"align/serve/vllm_adapter.py", "align/serve/vllm_plugin.py"}),
    # argilla-server's own code is patched only inside its processes (server/argilla_process, version-checked)
    "Argilla SDK": (r"argilla\._|\.api\.(records|datasets|users|workspaces)\b|\.api_model\(|\._server_id\b",
                    {"annotation/argilla_adapter.py", "annotation/server/argilla_process/"}),
}
# The web UI's own endpoints: only the adapter speaks them for the project; tests may call the server's REST
# API directly, as black-box checks of what it holds.
WEB_UI = (r"/api/v1/(token|me/)", {"annotation/argilla_adapter.py", "tests/"})
# The adapters' own tests read the dependencies' internals to check what the adapters rely on.
ADAPTER_TESTS = {"tests/test_adapters.py", "tests/dpo/test_compat.py", "tests/annotation/test_argilla_adapter.py",
                 "tests/serving/test_expert_parallel_routing.py"}


def python_files() -> dict[str, str]:
    return {str(path.relative_to(REPO_ROOT)): path.read_text()
            for folder in SCANNED for path in sorted((REPO_ROOT / folder).rglob("*.py"))}


def offenders(pattern: str, allowed: set[str], files: dict[str, str]) -> dict[str, list[str]]:
    """file -> the private names it uses, for every file outside `allowed` (a path, or a folder ending in /)."""
    found = {}
    for name, text in files.items():
        if name in ADAPTER_TESTS or any(name == a or (a.endswith("/") and name.startswith(a)) for a in allowed):
            continue
        hits = sorted({match.group(0) for match in re.finditer(pattern, text)})
        if hits:
            found[name] = hits
    return found


def test_no_module_but_its_adapter_names_a_dependencys_private_api():
    files = python_files()
    found = {dependency: offenders(pattern, allowed, files) for dependency, (pattern, allowed) in PRIVATES.items()}
    found["Argilla web UI endpoints"] = offenders(*WEB_UI, files)
    assert {dependency: where for dependency, where in found.items() if where} == {}


def test_the_scan_finds_what_it_looks_for():
    """The patterns match the adapters' own use (a typo in one would pass the test above vacuously)."""
    files = python_files()
    for dependency, (pattern, allowed) in PRIVATES.items():
        adapters = {name: text for name, text in files.items()
                    if any(name == a or (a.endswith("/") and name.startswith(a)) for a in allowed)}
        assert any(re.search(pattern, text) for text in adapters.values()), dependency
        assert offenders(pattern, set(), adapters), dependency
    assert offenders(*WEB_UI[:1], set(), {"annotation/simulate.py": 'http.post("/api/v1/token")'}) == {
        "annotation/simulate.py": ["/api/v1/token"]}
