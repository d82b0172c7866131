"""The one exception type for a user's mistake: its message is a single sentence that names the fix."""


class UserError(Exception):
    """Bad input from the user (a missing path, an unknown preset, a corrupt file...).

    The CLI prints the message on one line and exits with status 2; the UI shows it as a notification.
    Anything else that escapes is a bug and keeps its traceback.
    """
