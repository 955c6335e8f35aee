"""The tiny models trained on the mini-world, shipped with vlbench (`--model mini`). The recipes
that make them live with the mini-world (`vlbench miniworld train-clip|train-sd`)."""

from pathlib import Path


def mini_model_dir(name: str) -> Path:
    """The shipped folder of `name`: `mini-clip` (open_clip local-dir) or `mini-sd` (diffusers)."""
    return Path(__file__).parent / name
