"""The shipped mini CLIP, loaded through open_clip's real `local-dir` path, offline."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import mini_comvg_accuracy, mini_results, vlbench_cli
from support import hub_repository

PARTS = ("subject", "object", "verb")
pytestmark = pytest.mark.usefixtures("offline")


def test_shipped_mini_clip_knows_objects_but_not_composition_on_a_held_out_world(tmp_path):
    """Like web-trained CLIP: subject and object swaps (which things, which colours) at least 90%;
    relation swaps at most 80% and Winoground's group at most 50%, above chance (1/6)."""
    accuracy = mini_comvg_accuracy(tmp_path, "clip", "mini", world_seed=7)
    assert accuracy["subject"] >= 0.90 and accuracy["object"] >= 0.90 and accuracy["verb"] <= 0.80, accuracy
    group = mini_results(tmp_path, "mini-winoground", "clip", "mini", world_seed=7)["metrics"]["group"]
    assert 1 / 6 < group <= 0.50, group


def test_trained_clip_ft_beats_zero_shot_on_a_held_out_world(tmp_path):
    """The towers carry the relation the shipped heads do not read, so 5% shots (30 examples, its
    defaults) lift clip-ft's relation swaps on a world no model saw and no setting was chosen on
    (its defaults come from world 7): 50.50 → 86.84 when written, average 83.50 → 94.21."""
    zero_shot = mini_results(tmp_path, "mini-comvg", "clip-ft", "mini", world_seed=3)
    trained = mini_results(tmp_path, "mini-comvg", "clip-ft", "mini", world_seed=3, shots="5%")
    relations = [results["breakdown"]["neg_value"]["verb"]["accuracy"] for results in (zero_shot, trained)]
    assert relations[1] > relations[0] + 0.15 and trained["metrics"]["average"] > zero_shot["metrics"]["average"] + 0.05, relations


def test_scores_do_not_depend_on_candidate_order():
    import vlbench
    from vlbench.tasks.miniworld.tasks import MiniComVGOptions, MiniComVGTask
    from vlbench.types import LoadedImage

    matcher = vlbench.create_matcher("clip", model="mini", device="cpu")
    example = MiniComVGTask(MiniComVGOptions(), None).examples(seed=0)[0]
    images = [LoadedImage(ref.key, ref.load()) for ref in example.images]
    texts = ["a red circle above a blue square", example.texts[0], "a green triangle left of a yellow circle"]
    with torch.no_grad():
        forward = matcher.score(images, texts)
        backward = matcher.score(images[::-1], texts[::-1])
    torch.testing.assert_close(backward, forward.flip(0).flip(1), atol=1e-5, rtol=0)


def test_a_model_that_is_not_available_offline_says_what_to_do(tmp_path):
    result = vlbench_cli("run", "--task", "mini-comvg", "--matcher", "clip", "--model", "ViT-B-16:openai", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: --model ViT-B-16:openai: open_clip could not load it") and "`--model mini` needs nothing" in message


def test_the_clip_recipe_is_deterministic_for_a_seed(tmp_path):
    """Covers the slow full retrain: same seed, same bytes (here at 2 steps)."""
    from vlbench.tasks.miniworld.train_clip import train_mini_clip

    for name in ("a", "b"):
        train_mini_clip(tmp_path / name, seed=3, steps=2, batch_size=8, log=lambda line: None)
    for part in ("open_clip_model.safetensors", "open_clip_config.json"):
        assert (tmp_path / "a" / part).read_bytes() == (tmp_path / "b" / part).read_bytes(), part


def test_a_relation_sentence_and_its_converse_have_one_meaning():
    import torch

    from vlbench.tasks.miniworld.scenes import one_meaning
    from vlbench.tasks.miniworld.train_clip import _contrastive_loss

    assert one_meaning("a blue square right of a red circle") == one_meaning("a red circle left of a blue square") == "a red circle left of a blue square"
    assert one_meaning("a red circle below a blue square") == "a blue square above a red circle"
    assert one_meaning("a blue square left of a red circle") != one_meaning("a red circle left of a blue square")  # arguments swapped: another meaning
    assert one_meaning("a red circle and a blue square") == "a red circle and a blue square"
    images, texts = torch.eye(2), torch.tensor([[1.0, 0.2], [0.3, 1.0]])
    captions = ["a red circle left of a blue square", "a blue square right of a red circle"]
    plain = _contrastive_loss(images, texts, torch.tensor(0.0), captions)
    masked = _contrastive_loss(images, texts, torch.tensor(0.0), [one_meaning(caption) for caption in captions])
    assert masked == _contrastive_loss(images, texts, torch.tensor(0.0), [captions[0]] * 2) and masked < plain


@pytest.mark.slow
def test_retraining_with_the_recipe_reproduces_the_shipped_numbers(tmp_path):
    """The recipe (about 8 minutes on 2 cores) retrained with its recorded settings lands within 2 points;
    `test_the_clip_recipe_is_deterministic_for_a_seed` covers it fast."""
    from vlbench.matchers.mini_models import mini_model_dir
    from vlbench.tasks.miniworld.train_clip import train_mini_clip

    card = json.loads((mini_model_dir("mini-clip") / "training.json").read_text())
    settings = {key: card[key] for key in ("seed", "steps", "batch_size", "lr", "twins_per_step", "twin_weight", "mask_synonyms")}
    train_mini_clip(tmp_path / "retrained", **settings, log=lambda line: None)
    shipped = mini_comvg_accuracy(tmp_path / "a", "clip", "mini", world_seed=7)
    retrained = mini_comvg_accuracy(tmp_path / "b", "clip", str(tmp_path / "retrained"), world_seed=7)
    assert all(abs(shipped[part] - retrained[part]) <= 0.02 for part in PARTS), (shipped, retrained)


def copy_of_mini_clip(folder, weights_name="open_clip_model.safetensors"):
    from vlbench.matchers.mini_models import mini_model_dir

    shipped = mini_model_dir("mini-clip")
    folder.mkdir()
    (folder / "open_clip_config.json").write_bytes((shipped / "open_clip_config.json").read_bytes())
    (folder / weights_name).write_bytes((shipped / "open_clip_model.safetensors").read_bytes())
    return folder


def test_a_model_folder_s_fingerprint_covers_whichever_weights_file_open_clip_loads(tmp_path):
    from safetensors.torch import load_file, save_file

    from vlbench.matchers.clip.loading import load_open_clip
    from vlbench.hashing import files_sha256
    from vlbench.matchers.mini_models import mini_model_dir

    shipped = mini_model_dir("mini-clip")
    # The shipped model's fingerprint is the one its stored runs were made with: config and weights.
    assert load_open_clip("mini", "cpu").fingerprint["weights_sha256"] == files_sha256([shipped / "open_clip_config.json", shipped / "open_clip_model.safetensors"], shipped)
    folder = copy_of_mini_clip(tmp_path / "renamed", "model.safetensors")  # a name open_clip also loads
    before = load_open_clip(str(folder), "cpu").fingerprint["weights_sha256"]
    weights = load_file(folder / "model.safetensors")
    name = next(iter(weights))
    save_file({**weights, name: weights[name] * 0.5}, folder / "model.safetensors")
    assert load_open_clip(str(folder), "cpu").fingerprint["weights_sha256"] != before


@pytest.mark.parametrize("extra, hint", [(None, ""), ("epoch_32.pt", "(epoch_32.pt: open_clip does not read .pt files here; rename to open_clip_pytorch_model.bin)")])
def test_a_model_folder_without_weights_open_clip_reads_is_refused(tmp_path, extra, hint):
    folder = copy_of_mini_clip(tmp_path / "model")
    (folder / "open_clip_model.safetensors").unlink()
    if extra:
        (folder / extra).write_bytes(b"weights")
    result = vlbench_cli("run", "--task", "mini-comvg", "--matcher", "clip", "--model", str(folder), "--limit", "5", cwd=tmp_path, check=False)
    assert result.returncode == 2 and not (tmp_path / "runs").exists()
    assert result.stderr.strip().splitlines()[-1] == f"error: --model {folder}: {folder} holds no weights file open_clip reads (*.safetensors, *.bin, *.pth){' ' + hint if hint else ''}; it would score with random weights"


def test_a_model_folder_whose_config_names_a_tokenizer_fingerprints_the_tokenizer_files(tmp_path):
    from vlbench.matchers.clip.loading import _local_dir_files

    folder = copy_of_mini_clip(tmp_path / "model")
    (folder / "tokenizer.json").write_text("{}")
    assert {file.name for file in _local_dir_files(folder)} == {"open_clip_config.json", "open_clip_model.safetensors"}
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["model_cfg"]["text_cfg"]["hf_tokenizer_name"] = "some/tokenizer"
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    assert {file.name for file in _local_dir_files(folder)} == {"open_clip_config.json", "open_clip_model.safetensors", "tokenizer.json"}


def test_a_model_whose_towers_or_tokenizer_run_on_timm_or_transformers_records_their_versions(tmp_path):
    """A timm vision tower (as SigLIP's, ConvNeXt's) and a Hugging Face tokenizer compute the
    features: their libraries' versions are part of the run's identity and of the feature cache's
    key; the mini CLIP, plain open_clip, names neither."""
    import shutil

    from open_clip.model import CLIP
    from safetensors.torch import save_file

    from vlbench import registry
    from vlbench.matchers.mini_models import mini_model_dir
    from vlbench.options import build
    from vlbench.provenance import scoring_libraries
    from vlbench.runtime import Runtime

    folder = tmp_path / "timm-clip"
    folder.mkdir()
    model_cfg = {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 32, "timm_model_name": "test_vit", "timm_model_pretrained": False, "timm_pool": "", "timm_proj": "linear"},
        "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 1, "hf_tokenizer_name": str(folder)},
    }
    save_file(CLIP(**model_cfg).state_dict(), folder / "open_clip_model.safetensors")
    for file in (mini_model_dir("mini-sd") / "tokenizer").iterdir():  # a CLIP tokenizer in Hugging Face's layout
        shutil.copy(file, folder / file.name)
    preprocess = json.loads((mini_model_dir("mini-clip") / "open_clip_config.json").read_text())["preprocess_cfg"]
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}))
    clip = registry.matchers.get("clip")

    def built(model: str):
        return clip(build(clip.Options, {}, "matcher_options"), Runtime("cpu", 0, model, False))

    towers = ("timm", "transformers", "tokenizers")
    timm_clip, mini = built(str(folder)), built("mini")
    assert all(scoring_libraries(timm_clip)[name] for name in towers) and not set(towers) & set(scoring_libraries(mini))
    producer = json.loads((timm_clip.features.cache.directory / "producer.json").read_text())
    assert all(producer[name] == scoring_libraries(timm_clip)[name] for name in towers)


def test_a_hub_model_s_fingerprint_covers_a_tokenizer_from_another_repository(tmp_path):
    """The config of `hf-hub:vlbench-test/clip` names its tokenizer in `vlbench-test/tokenizer`: a
    new revision of that repository tokenizes differently, and the model's fingerprint changes."""
    from vlbench.matchers.mini_models import mini_model_dir

    hub, clip, tokenizer = tmp_path / "hub", mini_model_dir("mini-clip"), mini_model_dir("mini-sd") / "tokenizer"
    config = json.loads((clip / "open_clip_config.json").read_text())
    config["model_cfg"]["text_cfg"]["hf_tokenizer_name"] = "vlbench-test/tokenizer"
    hub_repository(hub, "vlbench-test/clip", {"open_clip_config.json": json.dumps(config).encode(), "open_clip_model.safetensors": (clip / "open_clip_model.safetensors").read_bytes()}, "1" * 40)
    files = {**{file.name: file.read_bytes() for file in tokenizer.iterdir()}, "config.json": b'{"model_type": "clip_text_model"}'}
    hub_repository(hub, "vlbench-test/tokenizer", files, "2" * 40)

    def loaded() -> dict:
        script = "import json; from vlbench.matchers.clip.loading import load_open_clip; c = load_open_clip('hf-hub:vlbench-test/clip', 'cpu'); print(json.dumps([c.fingerprint, c.tokenizer(['a red cube']).tolist()]))"
        result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, check=True)
        return json.loads(result.stdout.splitlines()[-1])

    (before, tokens_before), vocabulary = loaded(), json.loads(files["tokenizer.json"])
    ids = vocabulary["model"]["vocab"]
    ids["red</w>"], ids["blue</w>"] = ids["blue</w>"], ids["red</w>"]  # the new revision swaps two words' ids
    hub_repository(hub, "vlbench-test/tokenizer", {**files, "tokenizer.json": json.dumps(vocabulary).encode()}, "3" * 40)
    after, tokens_after = loaded()
    assert tokens_after != tokens_before and after["weights_sha256"] == before["weights_sha256"]
    assert after["tokenizer_sha256"] != before["tokenizer_sha256"]
