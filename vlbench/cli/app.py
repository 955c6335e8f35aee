"""The `vlbench` entry point: errors the user can fix print as one line, without a traceback."""

from __future__ import annotations

import os
import signal
import sys

import typer

from vlbench.cli import data_command, leaderboard_command, list_command, miniworld_command, report_command, run_command, score_command, suite_command
from vlbench.errors import Interrupted, VlbenchError

app = typer.Typer(
    name="vlbench",
    help="Benchmark vision-language matchers on image-text matching tasks under one few-shot protocol.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run")(run_command.run)
app.command("list")(list_command.list_entries)
app.command("leaderboard")(leaderboard_command.leaderboard)
app.command("score")(score_command.score)
app.command("report")(report_command.report)
app.add_typer(data_command.data_app, name="data")
app.add_typer(miniworld_command.miniworld_app, name="miniworld")
app.add_typer(suite_command.suite_app, name="suite")

_debug = {"on": bool(os.environ.get("VLBENCH_DEBUG"))}


@app.callback()
def options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    _debug["on"] = _debug["on"] or debug


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's stop is handled like Ctrl-C
    try:
        app()
    except SystemExit as leaving:
        from vlbench import distributed

        if leaving.code == 130 and distributed.current().is_main:  # typer's answer to a Ctrl-C outside training and scoring
            typer.secho("interrupted (a run keeps what it stored, and the same command resumes it)", err=True, fg="yellow")
        raise
    except VlbenchError as error:
        if _debug["on"]:
            raise
        typer.secho(f"error: {error}", err=True, fg="red")
        sys.exit(2)
    except Interrupted as interrupted:
        from vlbench import distributed

        if distributed.current().is_main:
            typer.secho(str(interrupted), err=True, fg="yellow")
        sys.exit(130)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
