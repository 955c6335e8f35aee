"""The one exception type the CLI shows as a one-line message instead of a traceback."""


class VlbenchError(Exception):
    """A problem the user can fix: the message says what happened, where, and what to do."""
