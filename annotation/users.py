"""`python -m annotation users add`: an annotator account, and its membership of a workspace."""

from __future__ import annotations

from annotation import argilla_adapter
from annotation.connection import lookup
from annotation.errors import AnnotationError

MIN_PASSWORD_LENGTH = 8  # argilla-server's own minimum


def add_user(client, name: str, password: str, role: str, workspace_name: str) -> str:
    """Create the user (or find it) and make it a member of the workspace; says what it did.

    An existing user keeps its password and role: `add` never takes an account from someone."""
    import argilla as rg

    ArgillaAPIError = argilla_adapter.api_error_type()

    if len(password) < MIN_PASSWORD_LENGTH:
        raise AnnotationError(f"the password for {name!r} is too short: at least {MIN_PASSWORD_LENGTH} characters")
    workspace = lookup(client.workspaces, workspace_name)
    if workspace is None:
        workspace = rg.Workspace(name=workspace_name, client=client).create()
    user = lookup(client.users, name)
    if user is None:
        try:
            user = rg.User(username=name, password=password, role=role, client=client).create()
        except ArgillaAPIError as error:
            raise AnnotationError(f"Argilla refused the user {name!r}: {error}") from error
        action = f"created {role} {name!r}"
    else:
        action = f"user {name!r} already exists (password and role unchanged)"
    if role != "owner" and name not in {member.username for member in workspace.users}:
        workspace.add_user(user)
        return f"{action}; added to workspace {workspace_name!r}"
    return f"{action}; member of workspace {workspace_name!r}"
