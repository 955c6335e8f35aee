"""Loading open_clip models by the `--model` value, with errors that say what to download, and a
content hash of the weights loaded (part of every run's identity).

`--model` forms:
- `mini`: the mini CLIP shipped with vlbench (trained on the mini-world);
- a directory holding `open_clip_config.json` and weights (an open_clip `local-dir` model);
- `hf-hub:ORG/NAME`: a Hugging Face hub model, from the local hub cache when offline;
- `ARCH:TAG`, e.g. `ViT-B-16:openai` (the default): an open_clip architecture and pretrained tag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlbench.errors import VlbenchError
from vlbench.hashing import files_sha256
from vlbench.matchers.mini_models import mini_model_dir

DEFAULT_MODEL = "ViT-B-16:openai"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")  # what open_clip looks for in a local-dir model


@dataclass
class LoadedClip:
    model: Any
    preprocess: Any
    tokenizer: Any
    fingerprint: dict[str, Any]


def load_open_clip(model: str | None, device: str) -> LoadedClip:
    """The model, its image preprocessing and tokenizer, and a fingerprint of the weights."""
    import open_clip

    spec = model or DEFAULT_MODEL
    path = mini_model_dir("mini-clip") if spec == "mini" else Path(spec)
    try:
        logging.disable(logging.ERROR)  # open_clip logs the failure it then raises; the raised error is reported below
        if path.is_dir():
            problem = _local_dir_problem(path)
            if problem:
                raise VlbenchError(f"--model {spec}: {problem}")
            name = f"local-dir:{path}"
            created = open_clip.create_model_and_transforms(name, device=device)
            tokenizer = open_clip.get_tokenizer(name)
            checkpoint = (path, _local_dir_files(path))
        elif spec.startswith("hf-hub:"):
            created = open_clip.create_model_and_transforms(spec, device=device)
            tokenizer = open_clip.get_tokenizer(spec)
            checkpoint = _hub_snapshot(spec.removeprefix("hf-hub:"))
        else:
            architecture, _, tag = spec.partition(":")
            if architecture not in open_clip.list_models():
                raise VlbenchError(f"--model {spec}: not a folder, not hf-hub:ORG/NAME, and '{architecture}' is not an open_clip architecture (see open_clip.list_models()); `--model mini` is the shipped mini CLIP")
            if not tag:
                raise VlbenchError(_untrained_message(spec, open_clip.list_pretrained_tags_by_model(architecture)))
            created = open_clip.create_model_and_transforms(architecture, pretrained=tag, device=device)
            tokenizer = open_clip.get_tokenizer(architecture)
            weights = Path(open_clip.pretrained.download_pretrained(open_clip.pretrained.get_pretrained_cfg(architecture, tag)))
            checkpoint = (weights.parent, [weights])
        tokenizer_hash = tokenizer_sha256(tokenizer)
    except VlbenchError:
        raise
    except Exception as error:  # open_clip raises many kinds for a model it cannot get offline
        arguments = f"'{spec}'" if spec.startswith("hf-hub:") else f"'{spec.partition(':')[0]}', pretrained='{spec.partition(':')[2] or 'openai'}'"
        raise VlbenchError(
            f"--model {spec}: open_clip could not load it ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            f"Offline, download it first on a machine with internet (e.g. `python -c \"import open_clip; "
            f"open_clip.create_model_and_transforms({arguments}); open_clip.get_tokenizer({arguments.partition(',')[0]})\"`) "
            f"and copy the cache (~/.cache/huggingface), or pass a local-dir model folder; `--model mini` needs nothing."
        ) from None
    finally:
        logging.disable(logging.NOTSET)
    clip_model, _, preprocess = created
    clip_model.eval()
    root, files = checkpoint
    fingerprint = {"model": spec, "weights_sha256": files_sha256(files, root)}
    if tokenizer_hash is not None:
        fingerprint["tokenizer_sha256"] = tokenizer_hash
    return LoadedClip(clip_model, preprocess, tokenizer, fingerprint)


def tokenizer_sha256(tokenizer) -> str | None:
    """A hash of how a Hugging Face tokenizer that open_clip wraps (a model config's
    `hf_tokenizer_name`, often another hub repository than the weights', or SigLIP's) tokenizes:
    a fast tokenizer's whole state (vocabulary, merges, normalisation, special tokens), or a slow
    one's vocabulary files and special tokens, wherever it was loaded from. None for open_clip's
    own tokenizer, which its version fixes."""
    import hashlib
    import json
    import tempfile

    wrapped = getattr(tokenizer, "tokenizer", None)
    if wrapped is None or not hasattr(wrapped, "save_vocabulary"):
        return None
    backend = getattr(wrapped, "backend_tokenizer", None)
    digest = hashlib.sha256(json.dumps(wrapped.special_tokens_map, sort_keys=True, default=str).encode())
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        with tempfile.TemporaryDirectory() as directory:
            for written in sorted(wrapped.save_vocabulary(directory)):
                digest.update(Path(written).read_bytes())
    return digest.hexdigest()


def missing_open_clip(model: str | None) -> str | None:
    """Why `model` is not on this machine, with what to download; None if it is (no weights read)."""
    import os

    import open_clip
    from huggingface_hub import try_to_load_from_cache

    spec = model or DEFAULT_MODEL
    if spec == "mini":
        return None
    if Path(spec).is_dir():
        return _local_dir_problem(Path(spec))
    fetch = f"on a machine with internet run `python -c \"import open_clip; open_clip.create_model_and_transforms('{spec}')\"` and copy ~/.cache/huggingface here"
    if spec.startswith("hf-hub:"):
        repo, names = spec.removeprefix("hf-hub:"), ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    else:
        architecture, _, tag = spec.partition(":")
        config = open_clip.pretrained.get_pretrained_cfg(architecture, tag) if tag else {}
        if not config:
            return f"{spec}: open_clip knows no pretrained weights by this name (ARCH:TAG, e.g. {DEFAULT_MODEL})"
        fetch = fetch.replace(f"'{spec}'", f"'{architecture}', pretrained='{tag}'")
        if not config.get("hf_hub"):
            cached = Path("~/.cache/clip").expanduser() / os.path.basename(config["url"])
            return None if cached.exists() else f"{spec}: {cached} is missing; {fetch.replace('~/.cache/huggingface', '~/.cache/clip')}"
        repo, name = os.path.split(config["hf_hub"])
        names = (name,) if name else ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    if any(isinstance(try_to_load_from_cache(repo, name), str) for name in names):
        return None
    return f"{spec}: not in the local Hugging Face cache ({repo}); {fetch}"


def _weight_files(path: Path) -> list[Path]:
    """The files of a local-dir model that open_clip may take its weights from (it picks one by name)."""
    return [file for file in path.iterdir() if file.is_file() and file.suffix in WEIGHT_SUFFIXES]


def _local_dir_problem(path: Path) -> str | None:
    """Why open_clip cannot load a model with its trained weights from folder `path`; None if it can."""
    if not (path / "open_clip_config.json").exists():
        return f"{path} has no open_clip_config.json (an open_clip local-dir model holds it and its weights)"
    if not _weight_files(path):
        named = [file.name for file in path.glob("*.pt")]
        hint = f" ({', '.join(named)}: open_clip does not read .pt files here; rename to open_clip_pytorch_model.bin)" if named else ""
        return f"{path} holds no weights file open_clip reads (*.safetensors, *.bin, *.pth){hint}; it would score with random weights"
    return None


def _local_dir_files(path: Path) -> list[Path]:
    """What a local-dir model's scores depend on: its config, every weights file, and where the
    config names a Hugging Face tokenizer (which open_clip then reads from the folder), every other file."""
    import json

    config = path / "open_clip_config.json"
    files = [config, *_weight_files(path)]
    if json.loads(config.read_text()).get("model_cfg", {}).get("text_cfg", {}).get("hf_tokenizer_name"):
        files += [file for file in path.iterdir() if file.is_file() and not file.name.startswith(".") and file not in files]
    return files


def _untrained_message(spec: str, tags: list[str]) -> str:
    known = f"its tags: {', '.join(tags)}" if tags else "open_clip knows no pretrained weights for it"
    return f"--model {spec}: names an architecture without weights (it would score with random ones); add a pretrained tag, ARCH:TAG ({known})"


def _hub_snapshot(repo: str) -> tuple[Path, list[Path]]:
    """The cached snapshot of an open_clip hub model and its config and weight files."""
    from huggingface_hub import snapshot_download

    root = Path(snapshot_download(repo, local_files_only=True))
    return root, [*root.glob("open_clip_config.json"), *root.glob("open_clip_*model*")]
