"""The one exception type for mistakes a user can fix."""


class KresError(Exception):
    """A user-facing error: its message is one line that names the problem and the fix.

    The CLI prints it as ``Error: <message>`` and exits with status 2, never with a traceback.
    """
