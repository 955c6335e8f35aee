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


@miniworld_app.command("train-clip")
def train_clip(
    out: Path = typer.Argument(..., help="Directory for the open_clip local-dir model."),
    seed: int = typer.Option(0, "--seed", help="Training seed (data, initialisation, batches)."),
    steps: int = typer.Option(800, "--steps", help="Optimiser steps."),
    mask_synonyms: bool = typer.Option(False, "--mask-synonyms", help="Also keep a relation sentence and its converse from being each other's negatives (not the shipped recipe; see the model card)."),
) -> None:
    """Train the mini CLIP on mini-world captions (about 8 minutes on 2 CPU cores)."""
    import json

    from vlbench.tasks.miniworld.train_clip import train_mini_clip

    info = train_mini_clip(out, seed=seed, steps=steps, mask_synonyms=mask_synonyms, log=typer.echo)
    typer.echo(json.dumps(info))
    typer.echo(f"mini CLIP written to {out}; use it with --model {out}")


@miniworld_app.command("board")
def board(
    runs_dir: Path = typer.Option(Path("runs/miniworld"), "--runs-dir", help="Where the suite's runs go (resumed if present)."),
    out: Path = typer.Option(None, "--out", help="Also write the leaderboard markdown here."),
    suite: Path = typer.Option(None, "--suite", help="Suite YAML (default: the shipped mini-world suite)."),
    baseline: str = typer.Option(None, "--baseline", help="Matcher to compare every row against (paired over examples: a bootstrap interval, a sign-flip p)."),
    plots: Path = typer.Option(None, "--plots", help="Write PNG plots into this directory and link them (needs matplotlib)."),
    jobs: int = typer.Option(1, "--jobs", help="Runs at a time (each in its own process when more than 1)."),
) -> None:
    """Run the mini-world suite (every mini task × matcher, offline) and print its leaderboard:
    `vlbench suite run` on the shipped `leaderboard/miniworld_suite.yaml`."""
    from vlbench.cli.suite_command import run_suite_command

    options = (f" --suite {suite}" if suite else "") + (f" --runs-dir {runs_dir}" if runs_dir != Path("runs/miniworld") else "")
    run_suite_command(suite or miniworld_suite(), runs_dir, None, jobs, out, baseline, plots, "vlbench miniworld board", options, "offline, 2 CPU cores suffice")


def miniworld_suite() -> Path:
    """The shipped mini-world suite, inside the `vlbench.leaderboard` package wherever it is
    installed (the checkout's leaderboard/ for an editable install, vlbench/leaderboard/ in a wheel)."""
    from importlib.util import find_spec

    return Path(find_spec("vlbench.leaderboard").submodule_search_locations[0]) / "miniworld_suite.yaml"


@miniworld_app.command("train-sd")
def train_sd(
    out: Path = typer.Argument(..., help="Directory for the diffusers-layout Stable Diffusion folder."),
    seed: int = typer.Option(0, "--seed", help="Training seed (data, initialisation, batches, noise)."),
    vae_steps: int = typer.Option(600, "--vae-steps", help="Autoencoder optimiser steps."),
    unet_steps: int = typer.Option(3000, "--unet-steps", help="UNet and text encoder optimiser steps."),
) -> None:
    """Train the mini Stable Diffusion on mini-world captions (about 25 minutes on 2 CPU cores)."""
    import json

    from vlbench.tasks.miniworld.train_sd import train_mini_sd

    info = train_mini_sd(out, seed=seed, vae_steps=vae_steps, unet_steps=unet_steps, log=typer.echo)
    typer.echo(json.dumps(info))
    typer.echo(f"mini Stable Diffusion written to {out}; use it with --model {out}")
