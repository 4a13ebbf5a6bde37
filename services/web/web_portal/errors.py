"""Errors of the web portal; app.py maps each to what the person sees, in one place."""

from __future__ import annotations

from bwvisu_common.errors import BwvisuError


class WebError(BwvisuError):
    """Base of the portal's own errors."""


class BundleError(WebError):
    """An app bundle file is broken; the message names the file and the field."""

    def __init__(self, file: str, field: str, problem: str) -> None:
        super().__init__(f"app bundle {file}: {field}: {problem}")
        self.file = file
        self.field = field


class NotFound(WebError):
    """No such session of this user (another user's sessions do not exist for them)."""


class Rejected(WebError):
    """runner-api refused a submission; `field` names what it did not accept."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class RunnerUnavailable(WebError):
    """runner-api, or the cluster behind it, does not answer."""


class AmbiguousUser(WebError):
    """The single sign-on header came twice or named several users: a 400, never a login."""
