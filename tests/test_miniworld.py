import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from conftest import vlbench_cli
from vlbench.tasks.comvg import ComVGOptions, ComVGTask
from vlbench.tasks.miniworld.scenes import RELATIONS, Fact, Thing, place_fact, random_fact, swapped
from vlbench.tasks.miniworld.tasks import MiniComVGOptions, MiniComVGTask, MiniVQAv2Options, MiniVQAv2Task, MiniWinogroundOptions, MiniWinogroundTask, generated_root
from vlbench.tasks.miniworld.writers import Sizes, write_all
from vlbench.tasks.refcocog import RefCOCOgOptions, RefCOCOgTask
from vlbench.tasks.vqav2 import VQAv2Options, VQAv2Task
from vlbench.tasks.winoground import WinogroundOptions, WinogroundTask

SMALL = Sizes(comvg=30, refcocog_images=40, vqav2_images_per_split=20, winoground=10)


def digest(root):
    return hashlib.sha256(b"".join(path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file())).hexdigest()


def test_same_seed_same_bytes_other_seed_other_world(tmp_path):
    write_all(tmp_path / "a", seed=3, sizes=SMALL)
    write_all(tmp_path / "b", seed=3, sizes=SMALL)
    write_all(tmp_path / "c", seed=4, sizes=SMALL)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_the_real_loaders_read_every_dataset(tmp_path):
    write_all(tmp_path, seed=0, sizes=SMALL)
    comvg = ComVGTask(ComVGOptions(), tmp_path / "comvg").examples(seed=0)
    assert len(comvg) == 30 and Counter(e.tags["neg_value"] for e in comvg) == {"subject": 10, "object": 10, "verb": 10}
    refcocog = RefCOCOgTask(RefCOCOgOptions(view="crop"), tmp_path / "refcocog")
    assert len(refcocog.train_pool(seed=0)) > 0 and len(refcocog.examples(seed=0)) > 0
    assert refcocog.examples(seed=0)[0].images[0].load().size[0] > 0
    vqa = VQAv2Task(VQAv2Options(source="official"), tmp_path / "vqav2")
    assert len(vqa.examples(seed=0)) == 40 and len(vqa.train_pool(seed=0)) == 40
    assert {e.tags["answer_type"] for e in vqa.examples(seed=0)} <= {"binary", "number", "other"}
    released = VQAv2Task(VQAv2Options(source="csv"), tmp_path / "vqav2").examples(seed=0)  # the release's vqa_text_test.csv, over val
    by_question = {(e.images[0].key, e.texts[0]) for e in vqa.examples(seed=0)}
    assert len(released) == 40 and {(e.images[0].key, e.texts[0]) for e in released} == by_question
    assert all(len(set(e.texts)) == 10 and e.images[0].load().size[0] > 0 for e in released)
    winoground = WinogroundTask(WinogroundOptions(), tmp_path / "winoground").examples(seed=0)
    assert len(winoground) == 10 and Counter(e.tags["collapsed_tag"] for e in winoground) == {"Object": 5, "Relation": 5}
    for example in winoground:
        assert sorted(example.texts[0].split()) == sorted(example.texts[1].split()) and example.texts[0] != example.texts[1]


@pytest.mark.parametrize("relation", RELATIONS)
def test_only_the_stated_relation_holds_in_the_picture(relation):
    rng = random.Random(relation)
    for _ in range(50):
        subject, obj = place_fact(Fact(Thing("red", "circle"), relation, Thing("blue", "square")), 32, rng)
        dx, dy = obj.x - subject.x, obj.y - subject.y
        horizontal = abs(dx) > 2 * abs(dy)
        vertical = abs(dy) > 2 * abs(dx)
        expected = {"left of": horizontal and dx > 0, "right of": horizontal and dx < 0, "above": vertical and dy > 0, "below": vertical and dy < 0}
        assert expected[relation], (relation, dx, dy)
        assert 0 <= subject.x - subject.radius and obj.x + obj.radius <= 32 and 0 <= min(subject.y, obj.y) - subject.radius


def test_a_swap_changes_exactly_the_named_part():
    rng = random.Random(0)
    for _ in range(100):
        fact = random_fact(rng)
        for part, field in (("subject", "subject"), ("object", "object"), ("verb", "relation")):
            other = swapped(fact, part, rng)
            changed = [name for name in ("subject", "relation", "object") if getattr(fact, name) != getattr(other, name)]
            assert changed == [field]


def test_mini_tasks_generate_once_into_the_cache():
    task = MiniComVGTask(MiniComVGOptions(), None)
    examples = task.examples(seed=0)
    assert len(examples) == 600
    root = generated_root(0, 32)
    assert json.loads((root / "miniworld.json").read_text())["seed"] == 0
    stamp = (root / "comvg" / "compositional_visual_genome.csv").stat().st_mtime_ns
    MiniComVGTask(MiniComVGOptions(), None).examples(seed=0)
    assert (root / "comvg" / "compositional_visual_genome.csv").stat().st_mtime_ns == stamp
    assert len(MiniVQAv2Task(MiniVQAv2Options(), None).examples(seed=0)) == 600
    assert len(MiniWinogroundTask(MiniWinogroundOptions(), None).examples(seed=0)) == 200


def test_generate_command_writes_layouts_that_pass_data_check(tmp_path):
    vlbench_cli("miniworld", "generate", "world", "--seed", "1", cwd=tmp_path)
    for task in ("comvg", "refcocog", "winoground"):
        assert "ok: the layout is complete" in vlbench_cli("data", "check", "--task", task, "--data-root", f"world/{task}", cwd=tmp_path).stdout
    (tmp_path / "vqa.yaml").write_text("task_options: {source: official}\n")
    assert "ok: the layout is complete" in vlbench_cli("data", "check", "--task", "vqav2", "--data-root", "world/vqav2", "--config", "vqa.yaml", cwd=tmp_path).stdout


def test_board_command_runs_the_suite_and_prints_the_leaderboard(tmp_path):
    (tmp_path / "suite.yaml").write_text("seeds: [0, 1]\ntasks: [mini-comvg, mini-winoground]\nruns:\n  - {matcher: random, seeds: [3]}\n  - {matcher: clip, model: mini}\n")
    result = vlbench_cli("miniworld", "board", "--suite", "suite.yaml", "--runs-dir", "runs", "--out", "board.md", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    board = (tmp_path / "board.md").read_text()
    title, stamp, tables = board.split("\n\n", 2)
    assert stamp.startswith("Regenerate from scratch (offline, 2 CPU cores suffice): `vlbench miniworld board --out board.md --suite suite.yaml --runs-dir runs`. Generated ")
    assert f"{title}\n\n{tables}" in result.stdout
    assert "## mini-comvg" in board and "## mini-winoground" in board
    clip_row = next(line for line in board.splitlines() if line.startswith("| clip (mini) | 0 | 2 | 600 |"))
    assert float(clip_row.split("|")[5].strip("* ").split()[0]) > 80  # average: far above chance (50)
    assert any(line.startswith("| random | 0 | 1 | 600 |") for line in board.splitlines())  # the entry's own seeds
    assert len(list((tmp_path / "runs").rglob("results.json"))) == 6


def board_structure(markdown: str) -> list[str]:
    """Section headings and table header lines: what a board has whatever its numbers."""
    return [line for line in markdown.splitlines() if line.startswith(("## ", "| matcher |", "![", "Paired comparison"))]


def test_the_committed_table1_board_records_its_suite_s_command_and_its_plots_exist():
    leaderboard = Path(__file__).parent.parent / "leaderboard"
    (command,) = [line.lstrip("# ").strip() for line in (leaderboard / "table1_suite.yaml").read_text().splitlines() if "vlbench miniworld board" in line]
    board = (leaderboard / "table1.md").read_text()
    assert board.split("\n\n", 2)[1].startswith(f"Regenerate from scratch (offline, 2 CPU cores suffice): `{command}`. Generated 20")
    plots = re.findall(r"\]\((plots/[^)]+\.png)\)", board)
    assert "plots/table1/mini-comvg-shots.png" in plots and all((leaderboard / image).stat().st_size > 1000 for image in plots)


def test_the_committed_mini_world_board_is_what_its_command_makes(tmp_path):
    committed = (Path(__file__).parent.parent / "leaderboard" / "miniworld.md").read_text()
    stamp = committed.split("\n\n", 2)[1]
    assert stamp.startswith("Regenerate from scratch (offline, 2 CPU cores suffice): `vlbench miniworld board --out leaderboard/miniworld.md --baseline zero-shot --plots leaderboard/plots`. Generated 20")
    assert "from commit " in stamp
    # The same command on a reduced suite (every task, a trained matcher and its zero-shot row, one seed, 30 examples).
    runs = "  - {matcher: random, limit: 30}\n  - {matcher: clip-ft, model: mini, limit: 30}\n  - {matcher: clip-ft, model: mini, shots: 5%, limit: 30}\n"
    (tmp_path / "suite.yaml").write_text("seeds: [0]\ntasks: [mini-comvg, mini-refcocog, mini-vqav2, mini-winoground]\nruns:\n" + runs)
    vlbench_cli("miniworld", "board", "--suite", "suite.yaml", "--runs-dir", "runs", "--out", "board.md", "--baseline", "zero-shot", "--plots", "plots", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert board_structure((tmp_path / "board.md").read_text()) == board_structure(committed)
    for image in re.findall(r"\]\((plots/[^)]+\.png)\)", committed):
        assert (tmp_path / image).stat().st_size > 1000


def test_the_mini_world_board_finds_its_suite_in_a_wheel(tmp_path):
    """A wheel puts the suite in vlbench/leaderboard/, not beside a checkout: `vlbench miniworld
    board` without --suite reads it there (built from a copy of the sources, imported from the
    unpacked wheel ahead of the editable install)."""
    import os
    import shutil
    import subprocess
    import sys
    import zipfile

    root, source = Path(__file__).parent.parent, tmp_path / "source"
    for folder in ("vlbench", "matchers", "tasks", "leaderboard"):
        shutil.copytree(root / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    found = subprocess.run(
        [sys.executable, "-c", "from vlbench.cli.miniworld_command import miniworld_suite; print(miniworld_suite())"],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}, cwd=tmp_path, capture_output=True, text=True, check=True,  # not the checkout's folder, first on sys.path
    ).stdout.strip()
    assert Path(found) == tmp_path / "site" / "vlbench" / "leaderboard" / "miniworld_suite.yaml" and Path(found).is_file()


def test_a_generation_stopped_by_ctrl_c_leaves_no_half_written_world(tmp_path, monkeypatch):
    from vlbench.tasks.miniworld import tasks

    def interrupted(staging, world_seed, image_size):
        (staging / "comvg").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setenv("VLBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(tasks, "write_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tasks.generated_root(3, 32)
    assert not list((tmp_path / "miniworld").iterdir())


def test_an_edited_generator_writes_a_new_world_instead_of_reading_the_old_one(tmp_path, monkeypatch):
    from vlbench.tasks.miniworld import scenes, tasks

    written = []

    def write_all(staging, world_seed, image_size):
        staging.mkdir(parents=True)
        (staging / "miniworld.json").write_text("{}")
        written.append(staging)

    monkeypatch.setenv("VLBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(tasks, "write_all", write_all)
    first = tasks.generated_root(3, 32)
    assert tasks.generated_root(3, 32) == first and len(written) == 1
    edited = tmp_path / "scenes.py"
    edited.write_text(Path(scenes.__file__).read_text() + "\n# an edit\n")
    monkeypatch.setattr(scenes, "__file__", str(edited))
    assert tasks.generated_root(3, 32) != first and len(written) == 2
