"""Bad input: one line on stderr, exit code 2, no traceback (unless --debug)."""

import os
import sys

import pytest

from conftest import vlbench_cli
from placeholders import REAL_COMVG_CSV
from placeholders import comvg_root


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--task", "colours", "--matcher", "random"], "error: unknown task 'colours'. Did you mean 'colors'? Known tasks: colors"),
        (["run", "--task", "colors", "--matcher", "radnom"], "error: unknown matcher 'radnom'. Did you mean 'random'?"),
        (["run", "--task", "tiny-files", "--matcher", "random"], "error: task 'tiny-files' needs its data: pass --data-root DIR, set VLBENCH_DATA, or set data_root in --config (in a suite: the task entry's data_root, under --data-dir). Expected layout: <root>/pairs.csv"),
        (["run", "--task", "tiny-files", "--matcher", "random", "--data-root", "nowhere"], "error: task 'tiny-files': data root nowhere does not exist."),
        (["run", "--task", "colors", "--matcher", "random", "--shots", "1.5"], "error: --shots 1.5: a fraction must be at least 0 and below 1 (got 1.5)"),
        (["run", "--task", "colors", "--matcher", "random", "--shots", "500"], "error: --shots 500: asks for 500 training examples but the evaluation pool has 200 examples; ask for at most 199"),
        (["run", "--task", "colors", "--matcher", "random", "--limit", "0"], "error: --limit 0: give at least 1 example, or leave it out for all"),
        (["run", "--task", "colors", "--matcher", "random", "--model", "mini"], "error: --model mini: matcher 'random' takes no model"),
        (["run", "--task", "colors", "--matcher", "random", "--config", "bad-key.yaml"], "error: bad-key.yaml: unknown key 'sheds'. Did you mean 'seeds'?"),
        (["run", "--task", "colors", "--matcher", "random", "--config", "bad-option.yaml"], "error: matcher_options: unknown key 'scale'. Known keys: none."),
        (["score", "not-a-run"], "error: not-a-run/results.json not found: is not-a-run a vlbench run directory?"),
        (["leaderboard", "empty"], "error: no results.json found under empty; run `vlbench run` first"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    (tmp_path / "bad-key.yaml").write_text("sheds: [1]\n")
    (tmp_path / "bad-option.yaml").write_text("matcher_options: {scale: 2}\n")
    (tmp_path / "empty").mkdir()
    result = vlbench_cli(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_debug_shows_the_traceback(tmp_path):
    result = vlbench_cli("--debug", "run", "--task", "colours", "--matcher", "random", cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Traceback" in result.stderr


def tiny_files_root(root, images=("p.png", "n.png")):
    from PIL import Image

    (root / "pairs.csv").write_text("id,text,pos_image,neg_image\nfirst,a red square,p.png,n.png\n")
    (root / "images").mkdir()
    for name in images:
        Image.new("RGB", (4, 4)).save(root / "images" / name)


def test_a_missing_image_stops_the_run_before_anything_is_stored_so_the_fixed_data_runs(tmp_path):
    """Stopped at the example instead, the run would have stored scores of data that the fix then changes: refused to resume."""
    tiny_files_root(tmp_path, images=("p.png",))
    args = ("run", "--task", "tiny-files", "--matcher", "random", "--data-root", ".")
    result = vlbench_cli(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: 1 of 2 image files are missing, e.g. images/n.png; put them in place "
        "(vlbench data check lists them all) and run again, or pass --on-bad-example skip to leave their evaluation examples out. Nothing was stored"
    )
    assert not (tmp_path / "runs").exists()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "n.png")
    assert vlbench_cli(*args, cwd=tmp_path).returncode == 0


def test_skipping_bad_examples_refuses_up_front_when_every_example_shows_a_missing_image(tmp_path):
    """Nothing would be left to score: no run directory that no command could finish."""
    tiny_files_root(tmp_path, images=())
    result = vlbench_cli("run", "--task", "tiny-files", "--matcher", "random", "--data-root", ".", "--on-bad-example", "skip", cwd=tmp_path, check=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: 2 of 2 image files are missing, e.g. images/")
    assert result.stderr.strip().endswith("and every evaluation example shows one, so --on-bad-example skip would leave none to score; put them in place (vlbench data check lists them all) and run again. Nothing was stored")
    assert not (tmp_path / "runs").exists()


def test_nan_scores_stop_the_run_and_name_the_example(tmp_path):
    (tmp_path / "nan.yaml").write_text("task_options: {n_examples: 6}\nmatcher_options: {nan_key: 3-0}\n")
    result = vlbench_cli("run", "--task", "colors", "--matcher", "counting", "--config", "nan.yaml", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: matcher 'counting' returned a NaN or infinite score for example 'colors-3'")
    assert "Traceback" not in result.stderr




def comvg_rows(tmp_path, rows, drop_column=None):
    """A ComVG data root holding the header and `rows` (1-based data rows) of the real csv."""
    import csv

    with open(REAL_COMVG_CSV, newline="") as handle:
        table = list(csv.reader(handle))
    header, body = table[0], [table[number] for number in rows]
    keep = [index for index, name in enumerate(header) if name != drop_column]
    source = tmp_path / "source.csv"
    with open(source, "w", newline="") as handle:
        csv.writer(handle).writerows([[row[index] for index in keep] for row in (header, *body)])
    return comvg_root(tmp_path / "comvg", source)


def broken_questions(tmp_path):
    root = tmp_path / "vqa"
    root.mkdir()
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text('{"questions": [\n  {"image_id": 1, "question": "what colour?" "question_id": 5}\n]}\n')
    (root / "v2_mscoco_val2014_annotations.json").write_text('{"annotations": []}\n')
    (root / "major_answers.json").write_text('["yes", "no"]\n')


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "comvg", "--data-root", "comvg", "--config", "missing-column.yaml"], "error: comvg/compositional_visual_genome.csv: missing column(s) neg_value; the header has id, sentence, pos_triplet, neg_triplet, pos_image_id, neg_image_id"),
        (["--task", "vqav2", "--data-root", "vqa", "--config", "official.yaml"], "error: vqa/v2_OpenEnded_mscoco_val2014_questions.json, line 2, column 46: not valid JSON (Expecting ',' delimiter)"),
        (["--task", "comvg", "--data-root", "comvg", "--config", "duplicated.yaml"], "error: task 'comvg': duplicate example id 'comvg-1' in the evaluation examples"),
        (["--task", "comvg", "--data-root", "comvg", "--config", "only-verbs.yaml"], "error: task 'comvg' has no evaluation examples (check its data and options)"),
    ],
    ids=["csv-missing-column", "json-does-not-parse", "duplicate-ids", "empty-after-filtering"],
)
def test_bad_data_is_one_clear_line(tmp_path, args, message):
    config = args[-1]
    if config == "missing-column.yaml":
        comvg_rows(tmp_path, [1, 2], drop_column="neg_value")
    elif config == "official.yaml":
        broken_questions(tmp_path)
        (tmp_path / config).write_text("task_options: {source: official, train_split: null}\n")
    elif config == "duplicated.yaml":
        comvg_rows(tmp_path, [1, 2, 1])
    else:
        comvg_rows(tmp_path, [1, 2])  # both rows swap the subject
        (tmp_path / config).write_text("task_options: {neg_value: verb}\n")
    if not (tmp_path / config).exists():
        (tmp_path / config).write_text("{}\n")
    result = vlbench_cli("run", "--matcher", "random", *args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [message], result.stderr
    assert "Traceback" not in result.stdout


@pytest.mark.parametrize(
    ("matcher", "model", "message"),
    [
        ("clip", "ViT-B-32:openai", "error: --model ViT-B-32:openai: open_clip could not load it (RuntimeError: Failed to download weights for tag 'openai'"),
        ("clip", "ViT-B-32", "error: --model ViT-B-32: names an architecture without weights (it would score with random ones); add a pretrained tag, ARCH:TAG (its tags: openai, "),
        ("dsd", "stabilityai/stable-diffusion-2-1-base", "error: --model stabilityai/stable-diffusion-2-1-base: cannot load a Stable Diffusion checkpoint (OfflineModeIsEnabled: "),
    ],
)
def test_a_model_not_available_offline_says_what_to_download(tmp_path, matcher, model, message):
    result = vlbench_cli("run", "--task", "mini-comvg", "--matcher", matcher, "--model", model, "--limit", "1", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"}, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert ("Offline, download it" in lines[0] or model == "ViT-B-32") and "Traceback" not in result.stderr


@pytest.fixture
def broken_plugin_site(tmp_path):
    """An installed distribution whose matcher entry point names a module that does not import."""
    site = tmp_path / "site"
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vlbench.matchers]\nbroken = broken_plugin_module:Matcher\n")
    (site / "broken_plugin_module.py").write_text("import a_dependency_that_is_not_installed\n")
    return site


def test_a_plugin_that_fails_to_import_is_named_and_the_others_keep_working(tmp_path, broken_plugin_site):
    import subprocess

    environment = {**os.environ, "PYTHONPATH": str(broken_plugin_site), "COLUMNS": "200"}

    def vlbench(*args):
        return subprocess.run([sys.executable, "-m", "vlbench", *args], cwd=tmp_path, env=environment, capture_output=True, text=True)

    listing = vlbench("list", "matchers")
    assert listing.returncode == 0, listing.stderr
    broken = next(line for line in listing.stdout.splitlines() if " broken " in line)
    assert "broken-plugin" in broken and "broken: matcher 'broken' (from broken-plugin, broken_plugin_module:Matcher) failed to load" in broken
    assert "built-in" in next(line for line in listing.stdout.splitlines() if " random " in line)

    failed = vlbench("run", "--task", "colors", "--matcher", "broken")
    assert failed.returncode == 2 and failed.stderr.strip().splitlines() == [
        "error: matcher 'broken' (from broken-plugin, broken_plugin_module:Matcher) failed to load: ModuleNotFoundError: No module named 'a_dependency_that_is_not_installed'"
    ]
    assert vlbench("run", "--task", "colors", "--matcher", "random").returncode == 0


def test_ctrl_c_outside_training_and_scoring_says_it_was_interrupted(vlbench_here, monkeypatch, tmp_path):
    from vlbench.registry import Registry

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Registry, "names", interrupted)  # Ctrl-C while the entries are read
    code, _, errors = vlbench_here("list", "matchers", cwd=tmp_path)
    assert code == 130 and errors.strip() == "interrupted (a run keeps what it stored, and the same command resumes it)"


def test_a_missing_training_image_is_named_as_one_whatever_on_bad_example_says(tmp_path):
    from vlbench.errors import VlbenchError
    from vlbench.runner import _refuse_missing_images
    from vlbench.types import Example, ImageRef

    gone = Example("t0", (ImageRef("gone", tmp_path / "gone.png"),), ("a",), ((0, 0),), {})
    with pytest.raises(VlbenchError, match=r"^training examples: 1 of 1 image files are missing, e\.g\. .*gone\.png; put them in place .* \(every training example is trained on, with --on-bad-example skip too\)\. Nothing was stored$"):
        _refuse_missing_images([], [gone], skip=True)
