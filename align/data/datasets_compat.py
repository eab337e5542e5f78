"""The one place that touches a private API of `datasets`; written for the release in `WRITTEN_FOR`,
checked on import (one warning naming the difference).

- `Dataset._fingerprint`: the content fingerprint that `datasets` keeps for every dataset and derives
  its cache files from. The stages key their own cache files on it (align.data.sources.fingerprint)
  instead of letting datasets hash the tokenizer object (~25 s for Qwen's vocabulary); there is no
  public accessor.
"""

from align.common import versions

WRITTEN_FOR = {"datasets": "5.2.0"}


def check_versions() -> list[str]:
    return versions.warn_about_differences(
        "align.data.datasets_compat", versions.version_differences(versions.installed_versions(WRITTEN_FOR),
                                                                    WRITTEN_FOR),
        "Cached tokenised data may be keyed wrongly; tests/data tell.")


check_versions()


def content_fingerprint(dataset) -> str:
    """The fingerprint `datasets` gives the dataset's content and history of transforms."""
    return dataset._fingerprint
