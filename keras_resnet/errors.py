"""The one exception type for mistakes a user can fix."""


class KresError(Exception):
    """A user-facing error: its message is one line that names the problem and the fix.

    The CLI prints it as ``Error: <message>`` and exits with status 2, never with a traceback.
    """


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``err``'s message (at most ``limit`` characters), or its type name when the
    message is empty: library errors often carry pages of text, and a KresError must stay one line."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:limit]
