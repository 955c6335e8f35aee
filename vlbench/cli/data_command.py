"""`vlbench data check`: validate a task's data layout."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(help="Inspect task data.", no_args_is_help=True)


@data_app.command("check")
def check(
    task: str = typer.Option(..., "--task", help="Task name (see `vlbench list tasks`)."),
    data_root: Path = typer.Option(None, "--data-root", help="Dataset root (else $VLBENCH_DATA, else the config file)."),
    config: Path = typer.Option(None, "--config", help="YAML file; its data_root and task_options are used."),
) -> None:
    """Print the task's counts (examples, images, tags), or exactly what is missing or broken and how
    to get it: every image file is opened and decoded.

    Exits with 1 when something is missing or broken."""
    from rich.console import Console

    from vlbench import registry
    from vlbench.config import read_yaml, resolve_data_root
    from vlbench.datacheck import check_data
    from vlbench.options import build

    values = read_yaml(config) if config else {}
    task_class = registry.tasks.get(task)
    options = build(task_class.Options, values.get("task_options"), "task_options")
    root = resolve_data_root(str(data_root) if data_root else None, values.get("data_root"))
    task_object = task_class(options, Path(root) if root else None)
    report = check_data(task_object)
    console = Console(highlight=False)
    console.print(f"task {task} · data root {root or '(none)'}")
    for name, value in report.counts.items():
        console.print(f"  {name}: {value}")
    for tag, values_by_tag in report.tags.items():
        console.print(f"  {tag}: " + ", ".join(f"{value} {count}" for value, count in values_by_tag.items()))
    if not report.problems:
        console.print("ok: the layout is complete")
        return
    for problem in report.problems:
        console.print(f"[red]problem:[/red] {problem}")
    for problem in report.bad_images:
        console.print(f"  {problem}")
    if report.n_bad_images > len(report.bad_images):
        console.print(f"  … and {report.n_bad_images - len(report.bad_images)} more")
    layout = task_object.describe()
    if not any(layout in problem for problem in report.problems):
        console.print(f"expected layout: {layout}")
    raise typer.Exit(1)
