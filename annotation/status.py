"""`python -m annotation status`: progress per dataset and per annotator."""

from __future__ import annotations

from typing import Optional

from annotation.connection import lookup
from annotation.errors import AnnotationError


def dataset_status(client, workspace_name: str, dataset_name: Optional[str] = None) -> dict:
    """{dataset name: {total, completed, pending, users: {username: {submitted, draft, discarded}}}}."""
    workspace = lookup(client.workspaces, workspace_name)
    if workspace is None:
        raise AnnotationError(f"workspace {workspace_name!r} does not exist")
    datasets = list(workspace.datasets)
    if dataset_name is not None:
        datasets = [d for d in datasets if d.name == dataset_name]
        if not datasets:
            raise AnnotationError(f"dataset {workspace_name}/{dataset_name} does not exist")
    report = {}
    for dataset in datasets:
        progress = dataset.progress(with_users_distribution=True)
        users = {
            name: {
                status: by_record_status["completed"][status] + by_record_status["pending"][status]
                for status in ("submitted", "draft", "discarded")
            }
            for name, by_record_status in progress.get("users", {}).items()
        }
        report[dataset.name] = {
            "total": progress["total"],
            "completed": progress["completed"],
            "pending": progress["pending"],
            "min_submitted": dataset.settings.distribution.min_submitted,
            "users": users,
        }
    return report


def format_status(report: dict) -> str:
    if not report:
        return "no datasets"
    lines = []
    for name, progress in report.items():
        lines.append(
            f"{name}: {progress['completed']}/{progress['total']} records completed "
            f"({progress['pending']} pending; {progress['min_submitted']} submitted response(s) complete a record)"
        )
        if not progress["users"]:
            lines.append("  no responses yet")
        for user, counts in sorted(progress["users"].items()):
            lines.append(
                f"  {user:<20} submitted {counts['submitted']:>6}  draft {counts['draft']:>6}  "
                f"discarded {counts['discarded']:>6}"
            )
    return "\n".join(lines)
