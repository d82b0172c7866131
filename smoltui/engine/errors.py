"""The one exception type for a user's mistake: its message is a single sentence that names the fix."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (a missing path, an unknown preset, a corrupt file...).

    The CLI prints the message on one line and exits with status 2; the UI shows it as a notification, or beside
    the form field named by `field` (a setting's name, e.g. "lr") when the mistake is about one field.
    Anything else that escapes is a bug and keeps its traceback.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
