"""diffusion-itm through the real diffusers loading path, on a random tiny SD built in code."""

import sys
from pathlib import Path

import pytest
import torch

import vlbench
from conftest import vlbench_cli
from vlbench.types import LoadedImage


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    """The mini SD's architecture with random weights, saved in the diffusers folder layout."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from vlbench.tasks.miniworld.tokenizer import write_tokenizer
    from vlbench.tasks.miniworld.train_sd import SCHEDULER_CONFIG, TEXT_CONFIG, UNET_CONFIG, VAE_CONFIG

    root = tmp_path_factory.mktemp("tiny-sd")
    torch.manual_seed(0)
    write_tokenizer(root / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **TEXT_CONFIG))
    pipeline = StableDiffusionPipeline(vae=AutoencoderKL(**VAE_CONFIG), text_encoder=text_encoder, tokenizer=tokenizer, unet=UNet2DConditionModel(**UNET_CONFIG), scheduler=DDPMScheduler(**SCHEDULER_CONFIG), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(root, safe_serialization=True)
    return root


def matcher(model, **options):
    return vlbench.create_matcher("diffusion-itm", model=str(model), device="cpu", **options)


def images():
    from vlbench.tasks.miniworld.tasks import MiniComVGOptions, MiniComVGTask

    example = MiniComVGTask(MiniComVGOptions(), None).examples(seed=0)[0]
    return [LoadedImage(ref.key, ref.load()) for ref in example.images]


def test_scores_do_not_depend_on_candidate_order(tiny_sd):
    scorer = matcher(tiny_sd, timesteps=[200, 700])
    pictures, texts = images(), ["a red circle left of a blue square", "a green square above a yellow triangle"]
    with torch.no_grad():
        forward = scorer.score(pictures, texts)
        backward = scorer.score(pictures[::-1], texts[::-1])
    assert forward.shape == (2, 2)
    torch.testing.assert_close(backward, forward.flip(0).flip(1), atol=1e-5, rtol=0)


def test_normalize_subtracts_the_unconditional_error(tiny_sd):
    # The run's noise is shared by every call, so the three errors are directly comparable.
    pictures, texts = images(), ["a red circle left of a blue square"]
    with torch.no_grad():
        plain = matcher(tiny_sd, timesteps=[300, 600]).score(pictures, texts)
        unconditional = matcher(tiny_sd, timesteps=[300, 600]).score(pictures, [""])
        normalized = matcher(tiny_sd, timesteps=[300, 600], normalize=True).score(pictures, texts)
    torch.testing.assert_close(normalized, plain - unconditional, atol=1e-6, rtol=0)


@pytest.mark.parametrize("normalize", [False, True])
def test_scores_equal_upstreams_loop_ported(tiny_sd, normalize):
    """Upstream's own loop (`benchmarks/upstream_diffusion_itm.py`: Euler noising, its timestep grid,
    the VAE per timestep, batches of examples) gives the same scores, given the latent's mean and
    the run's noise."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from upstream_diffusion_itm import UpstreamDiffusionITM

    scorer = matcher(tiny_sd, latent="mean", normalize=normalize, feature_cache=False)
    port = UpstreamDiffusionITM(str(tiny_sd), unconditional=normalize, latent="mean", batch_size=2)
    port.noise_bank = torch.stack([scorer.noise(t, port.noise_bank.shape[1:]) for t in port.timesteps])
    pictures, texts = images(), ["a red circle left of a blue square", "a blue square left of a red circle"]
    examples = [(pictures, texts), (pictures[::-1], texts[:1] * 2)]
    with torch.no_grad():
        ours = [scorer.score(example_images, example_texts) for example_images, example_texts in examples]
        theirs = port.score([([image.pixels for image in example_images], example_texts) for example_images, example_texts in examples])
    assert scorer.timesteps == port.timesteps == list(range(10, 990, 100))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert (ours[0][:, 0] != ours[0][:, 1]).all()  # the texts move the scores: the comparison has something to compare


def test_unavailable_model_says_what_to_download(tmp_path):
    result = vlbench_cli("run", "--task", "mini-comvg", "--matcher", "diffusion-itm", "--model", "no-such-org/no-such-model", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: --model no-such-org/no-such-model: cannot load a Stable Diffusion checkpoint")
    assert 'hf download no-such-org/no-such-model --include "*/*.json" --include "*/*.txt" --include "*/diffusion_pytorch_model.safetensors" --include "*/diffusion_pytorch_model-*.safetensors" --include "text_encoder/model.safetensors" --include "text_encoder/model-*.safetensors" --local-dir DIR' in message


def test_every_mini_world_word_is_one_token(tmp_path):
    from transformers import CLIPTokenizer

    from vlbench.tasks.miniworld.tokenizer import WORDS, write_tokenizer

    write_tokenizer(tmp_path)
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path)
    for word in WORDS:
        assert tokenizer.tokenize(word) == [f"{word}</w>"]
    assert tokenizer.tokenize("zebra") == ["z", "e", "b", "r", "a</w>"]


def test_the_sd_recipe_is_deterministic_for_a_seed(tmp_path):
    """Covers the slow full retrain: same seed, same bytes (here at a tiny size)."""
    from vlbench.tasks.miniworld.train_sd import train_mini_sd

    for name in ("a", "b"):
        train_mini_sd(tmp_path / name, seed=3, vae_steps=2, unet_steps=2, batch_groups=4, n_pairs=300, log=lambda line: None)
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors", "tokenizer/vocab.json"):
        assert (tmp_path / "a" / part).read_bytes() == (tmp_path / "b" / part).read_bytes(), part
