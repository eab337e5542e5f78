"""`python -m annotation status`: progress per dataset and per annotator, with each annotator's
quality as `pull` computes it (gold accuracy, agreement with the majority, flagged), live."""

from __future__ import annotations

from typing import Optional

from annotation import argilla_adapter
from annotation.connection import lookup
from annotation.errors import AnnotationError
from annotation.logic.quality import QualityPolicy, annotator_quality
from annotation.logic.resolve import submitted_labels


def dataset_status(
    client, workspace_name: str, dataset_name: Optional[str] = None, quality_policy: QualityPolicy = QualityPolicy()
) -> dict:
    """{dataset name: {total, completed, pending, min_submitted, users: {username: {submitted, draft,
    discarded}}, annotators: {username: quality as in pull's card}}}."""
    from annotation.pull import fetch_pairs

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
            # the dataset's own setting (the listed datasets carry the SDK's defaults, not the server's)
            "min_submitted": argilla_adapter.server_min_submitted(client, dataset),
            "users": users,
            "annotators": annotator_quality(fetch_pairs(client, dataset), quality_policy, submitted_labels),
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
            quality = progress["annotators"].get(user)
            lines.append(
                f"  {user:<20} submitted {counts['submitted']:>6}  draft {counts['draft']:>6}  "
                f"discarded {counts['discarded']:>6}" + (_quality_text(quality) if quality else "")
            )
    return "\n".join(lines)


def _quality_text(quality: dict) -> str:
    def share(value):
        return "-" if value is None else f"{value:.0%}"

    text = (f"  gold {quality['gold_correct']}/{quality['gold_answered']} ({share(quality['gold_accuracy'])})"
            f"  agrees with majority {share(quality['agreement_with_majority'])}")
    return text + ("  FLAGGED: votes excluded by pull" if quality["flagged"] else "")


def wait_until_annotated(
    client, workspace_name: str, dataset_name: str, timeout_s: float, poll_s: float = 10.0, log=print
) -> dict:
    """Wait until every record of the dataset has its `min_submitted` submitted responses; the dataset's
    `dataset_status` entry then. Past `timeout_s`, an AnnotationError says how far annotation got."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        progress = dataset_status(client, workspace_name, dataset_name)[dataset_name]
        if progress["total"] and progress["completed"] == progress["total"]:
            return progress
        if time.monotonic() >= deadline:
            raise AnnotationError(
                f"dataset {workspace_name}/{dataset_name}: {progress['completed']} of {progress['total']} records "
                f"have {progress['min_submitted']} submitted response(s) after {timeout_s:g}s"
            )
        log(f"waiting for annotators: {progress['completed']}/{progress['total']} records completed")
        time.sleep(poll_s)
