"""The exceptions the CLI turns into one line instead of a traceback."""


class VlbenchError(Exception):
    """A problem the user can fix: the message says what happened, where, and what to do."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped a run; what is stored is kept and the same command resumes."""

    def __init__(self, done: int, total: int, training: bool = False) -> None:
        super().__init__(
            "interrupted while training (nothing trained is kept); run the same command to train again and score"
            if training
            else f"interrupted after {done} of {total} examples; run the same command to resume"
        )
