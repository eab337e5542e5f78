"""The version check of the adapter modules (align.training.compat, align.data.datasets_compat, ...):
each states the releases it was written for and warns once, naming each difference, when others run."""

import importlib.metadata
import re
import warnings


def version_differences(installed: dict[str, str | None], written_for: dict[str, str]) -> list[str]:
    """`"trl 1.17.0 (written for 1.16.0)"` for each package whose release differs (local tags like
    `+cpu` ignored); a package that is not installed is not a difference."""
    differences = []
    for name, expected in written_for.items():
        found = installed.get(name)
        if found is not None and re.split(r"[+]", found)[0] != expected:
            differences.append(f"{name} {found} (written for {expected})")
    return differences


def installed_versions(names) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def warn_about_differences(adapter: str, differences: list[str], consequence: str) -> list[str]:
    """One RuntimeWarning naming the adapter, every difference and what may break; returns them."""
    if differences:
        warnings.warn(f"{adapter} touches private APIs of these packages and was written for other versions: "
                      + "; ".join(differences) + f". {consequence}", RuntimeWarning, stacklevel=3)
    return differences
