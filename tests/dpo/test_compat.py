"""The adapter module: the only place touching private TRL/DeepSpeed/torch APIs, and its version check."""

import re
import warnings
from pathlib import Path

import pytest

from align.training import compat

REPO = Path(__file__).resolve().parents[2]
PRIVATE = re.compile(
    r"_PRESET_ADAPTERS|_precompute_ref_logps|trl\.trainer\.utils|trl\.models\.utils|deepspeed\.module_inject"
    r"|deepspeed\.checkpoint|_current_graph_task_id|fused_lm_head=True|build_shm_op|FusedCausalLMOutput"
)


def test_no_training_module_but_compat_touches_private_apis():
    files = [*(REPO / "align").glob("training/*.py"), *(REPO / "align").glob("sft/*.py"),
             *(REPO / "align").glob("dpo/*.py"), *(REPO / "align").glob("models/**/*.py"),
             REPO / "align/demo.py", REPO / "bench/dpo_throughput.py"]
    offenders = {str(f.relative_to(REPO)) for f in files if f.name != "compat.py" and PRIVATE.search(f.read_text())}
    assert not offenders


def test_version_differences_name_each_package_and_ignore_local_build_tags():
    written_for = {"trl": "1.16.0", "deepspeed": "0.19.8", "torch": "2.13.0"}
    assert compat.version_differences({"trl": "1.16.0", "deepspeed": "0.19.8", "torch": "2.13.0+cpu"},
                                      written_for) == []
    assert compat.version_differences({"trl": "1.17.0", "deepspeed": None, "torch": "2.13.0"}, written_for) == [
        "trl 1.17.0 (written for 1.16.0)"
    ]


def test_other_versions_are_named_in_one_warning(monkeypatch):
    monkeypatch.setattr(compat, "installed_versions", lambda names=None: {"trl": "1.17.0", "deepspeed": "0.20.0"})
    with pytest.warns(RuntimeWarning, match=r"trl 1\.17\.0 \(written for 1\.16\.0\); deepspeed 0\.20\.0"):
        compat.check_versions()


def test_the_installed_versions_are_the_ones_it_was_written_for():
    """Pins moved in pyproject.toml? Re-check what compat touches, then update WRITTEN_FOR."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compat.check_versions() == []
