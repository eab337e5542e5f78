"""Shared fixtures. Nothing here downloads: models and tokenizers are built in the session."""

import os
from pathlib import Path

import pytest

# No network at run time: any attempt to reach the Hugging Face Hub fails instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_klear_dir(tmp_path_factory) -> Path:
    """A random tiny Klear checkpoint + ChatML tokenizer (official layout), built once per session."""
    from align.models.klear.tiny import build_tiny_klear

    return build_tiny_klear(tmp_path_factory.mktemp("tiny-klear"), seed=0)
