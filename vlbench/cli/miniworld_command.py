"""`vlbench miniworld`: the offline mini-world's datasets."""

from __future__ import annotations

from pathlib import Path

import typer

miniworld_app = typer.Typer(help="The offline mini-world: generated datasets in the real layouts.", no_args_is_help=True)


@miniworld_app.command("generate")
def generate(
    out: Path = typer.Argument(..., help="Directory to write comvg/, refcocog/, vqav2/ and winoground/ into."),
    seed: int = typer.Option(0, "--seed", help="World seed: the same seed gives the same datasets."),
    image_size: int = typer.Option(32, "--image-size", help="Image side in pixels."),
) -> None:
    """Write the four mini-world datasets, each in its benchmark's real layout (read them with
    `vlbench run --task comvg --data-root OUT/comvg`, and so on)."""
    from vlbench.errors import VlbenchError
    from vlbench.tasks.miniworld.writers import write_all

    if out.exists() and any(out.iterdir()):
        raise VlbenchError(f"{out} is not empty; give a new directory")
    write_all(out, seed, image_size)
    typer.echo(f"mini-world (seed {seed}, {image_size}px) written to {out}")
