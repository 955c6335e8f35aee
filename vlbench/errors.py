"""The exceptions the CLI turns into one line instead of a traceback."""


class VlbenchError(Exception):
    """A problem the user can fix: the message says what happened, where, and what to do."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped a run; what is stored is kept and the same command resumes."""

    def __init__(self, done: int, total: int, epochs: tuple[int, int] | None = None) -> None:
        """`done` of `total` examples scored; `epochs`: (kept, all) when training was interrupted."""
        if epochs is None:
            message = f"interrupted after {done} of {total} examples; run the same command to resume"
        elif epochs[0]:
            message = f"interrupted while training; {epochs[0]} of {epochs[1]} epochs are kept (the last checkpoint): run the same command to train the rest and score"
        else:
            message = "interrupted while training, before its first checkpoint (nothing trained is kept); run the same command to train and score"
        super().__init__(message)


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message ('' for none), for one-line reports."""
    return (str(error).strip().splitlines() or [""])[0]
