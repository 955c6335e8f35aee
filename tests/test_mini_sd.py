"""The shipped mini Stable Diffusion, loaded through diffusers' real `from_pretrained` path, offline."""

import json

import pytest

from conftest import mini_comvg_accuracy
from support import hub_repository

TARGETS = {"subject": 0.85, "object": 0.85, "verb": 0.65}
# The model card's measurement: diffusion-itm as vlbench scored before it took upstream's defaults.
SCORER = {"timesteps": [100, 300, 500, 700, 900], "error": "mse", "latent": "mean"}
pytestmark = pytest.mark.usefixtures("offline")


def test_shipped_mini_sd_meets_its_targets_on_a_held_out_world(tmp_path):
    accuracy = mini_comvg_accuracy(tmp_path, "diffusion-itm", "mini", world_seed=7, matcher_options=SCORER)
    assert all(accuracy[part] >= target for part, target in TARGETS.items()), accuracy


def test_shipped_mini_sd_is_a_stable_diffusion_folder():
    from diffusers import StableDiffusionPipeline

    from vlbench.matchers.mini_models import mini_model_dir

    pipeline = StableDiffusionPipeline.from_pretrained(mini_model_dir("mini-sd"), safety_checker=None, local_files_only=True)
    attention_blocks = [name for name, _ in pipeline.unet.named_modules() if name.endswith("attn2")]
    assert len(attention_blocks) >= 3, attention_blocks
    assert json.loads((mini_model_dir("mini-sd") / "training.json").read_text())["seed"] == 0


def test_the_same_checkpoint_elsewhere_has_the_same_fingerprint(tmp_path):
    """Where the files were loaded from (diffusers' `_name_or_path`) is no part of the model."""
    import shutil

    from vlbench.matchers.mini_models import mini_model_dir
    from vlbench.matchers.stable_diffusion.loading import load_stable_diffusion

    copy = shutil.copytree(mini_model_dir("mini-sd"), tmp_path / "sd")
    here, there = load_stable_diffusion("mini", "cpu").fingerprint, load_stable_diffusion(str(copy), "cpu").fingerprint
    assert {**here, "model": None} == {**there, "model": None}  # the model key is what --model said


def test_the_weights_hash_is_the_same_with_or_without_model_index_json(tmp_path):
    """A full hub download has `model_index.json` and vlbench's own download does not; no load reads it."""
    import shutil

    from vlbench.hashing import files_sha256
    from vlbench.matchers.mini_models import mini_model_dir
    from vlbench.matchers.stable_diffusion.loading import checkpoint_files, missing_stable_diffusion

    model = shutil.copytree(mini_model_dir("mini-sd"), tmp_path / "sd")
    full = files_sha256(checkpoint_files(model), model)
    (model / "model_index.json").unlink()
    assert files_sha256(checkpoint_files(model), model) == full
    assert missing_stable_diffusion(str(model)) is None, "what `hf download --include …` makes is a usable folder"
    (model / "unet" / "config.json").write_text((model / "unet" / "config.json").read_text() + " ")
    assert files_sha256(checkpoint_files(model), model) != full, "a component's config is read, and hashed"
    (model / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    assert missing_stable_diffusion(str(model)) == f"{model} lacks vae's weights (a diffusers Stable Diffusion folder holds unet/, vae/, text_encoder/, tokenizer/ and scheduler/)"


def test_sharded_weights_are_all_in_the_fingerprint(tmp_path):
    """A UNet saved in shards is hashed shard by shard: a changed shard changes the weights hash."""
    import shutil

    from diffusers import UNet2DConditionModel

    from vlbench.hashing import files_sha256
    from vlbench.matchers.mini_models import mini_model_dir
    from vlbench.matchers.stable_diffusion.loading import checkpoint_files

    model = shutil.copytree(mini_model_dir("mini-sd"), tmp_path / "sd")
    unet = UNet2DConditionModel.from_pretrained(model / "unet")
    shutil.rmtree(model / "unet")
    unet.save_pretrained(model / "unet", max_shard_size="1MB")
    shards = sorted(path.name for path in (model / "unet").glob("*.safetensors"))
    assert len(shards) >= 2 and {path.name for path in checkpoint_files(model) if path.parent.name == "unet"} >= set(shards)
    before = files_sha256(checkpoint_files(model), model)
    with open(model / "unet" / shards[-1], "r+b") as shard:
        shard.seek(-4, 2)
        shard.write(b"\x01\x02\x03\x04")
    assert files_sha256(checkpoint_files(model), model) != before


@pytest.mark.slow
def test_retraining_with_the_recipe_reproduces_the_shipped_numbers(tmp_path):
    """The full recipe (about 24 minutes on 2 cores); `test_the_sd_recipe_is_deterministic_for_a_seed` covers it fast."""
    from vlbench.matchers.mini_models import mini_model_dir
    from vlbench.tasks.miniworld.train_sd import train_mini_sd

    card = json.loads((mini_model_dir("mini-sd") / "training.json").read_text())
    train_mini_sd(tmp_path / "retrained", seed=card["seed"], vae_steps=card["vae_steps"], unet_steps=card["unet_steps"], batch_groups=card["batch_groups"], log=lambda line: None)
    shipped = mini_comvg_accuracy(tmp_path / "a", "diffusion-itm", "mini", world_seed=7)
    retrained = mini_comvg_accuracy(tmp_path / "b", "diffusion-itm", str(tmp_path / "retrained"), world_seed=7)
    assert all(abs(shipped[part] - retrained[part]) <= 0.02 for part in TARGETS), (shipped, retrained)


def test_a_hub_model_in_the_local_cache_loads_without_the_network(tmp_path):
    """Not in offline mode, a cached hub model is still read from the cache alone: no connection
    is attempted (huggingface_hub would otherwise retry each file for about 25 s without internet)."""
    import os
    import subprocess
    import sys

    from vlbench.matchers.mini_models import mini_model_dir
    from vlbench.matchers.stable_diffusion.loading import load_stable_diffusion

    shipped = mini_model_dir("mini-sd")
    hub_repository(tmp_path / "hub", "vlbench-test/sd", {path.relative_to(shipped).as_posix(): path.read_bytes() for path in shipped.rglob("*") if path.is_file()}, "4" * 40)
    script = (
        "import json, socket\n"
        "attempts = []\n"
        "def refuse(*args, **kwargs):\n"
        "    attempts.append(repr(args[:2]))\n"
        "    raise OSError('no network here')\n"
        "socket.getaddrinfo = socket.socket.connect = refuse\n"
        "from vlbench.matchers.stable_diffusion.loading import load_stable_diffusion\n"
        "print(json.dumps([attempts, load_stable_diffusion('vlbench-test/sd', 'cpu').fingerprint['weights_sha256']]))\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    result = subprocess.run([sys.executable, "-c", script], env={**environment, "HF_HUB_CACHE": str(tmp_path / "hub")}, capture_output=True, text=True, check=True)
    attempts, weights = json.loads(result.stdout.splitlines()[-1])
    assert attempts == [] and weights == load_stable_diffusion("mini", "cpu").fingerprint["weights_sha256"]

    # A snapshot that lacks a file a load reads (a download cut off) is completed, not loaded: offline, that is refused.
    next((tmp_path / "hub").rglob("unet/diffusion_pytorch_model.safetensors")).unlink()
    offline = subprocess.run([sys.executable, "-c", script], env={**environment, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    assert offline.returncode != 0 and "vlbench.errors.VlbenchError: --model vlbench-test/sd: cannot load a Stable Diffusion checkpoint (OfflineModeIsEnabled" in offline.stderr
