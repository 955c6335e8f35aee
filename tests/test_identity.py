"""A stored score is a function of its inputs: a run made from other weights, another plugin version
or other data refuses to resume (one line naming what changed, the stored record untouched), and
`--restart` scores again. Identical inputs (a copy of the data elsewhere) resume."""

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from placeholders import REAL_COMVG_CSV, comvg_root
from support import registered
from vlbench.config import load_run_config
from vlbench.errors import VlbenchError
from vlbench.runner import prepare, run
from vlbench.types import Matcher

HINT = "; use another --runs-dir, or --restart to discard them"


def stored(tmp_path):
    """The bytes of the one run's results.json and scores.jsonl."""
    (results,) = (tmp_path / "runs").rglob("results.json")
    return results.read_bytes(), results.with_name("scores.jsonl").read_bytes()


def results_of(tmp_path):
    (results,) = (tmp_path / "runs").rglob("results.json")
    return json.loads(results.read_text())


def test_changed_weights_at_the_same_path_refuse_to_resume(tmp_path, vlbench_here):
    from safetensors.torch import load_file, save_file

    from vlbench.matchers.mini_models import mini_model_dir

    shutil.copytree(mini_model_dir("mini-clip"), tmp_path / "model")
    args = ("run", "--task", "mini-comvg", "--matcher", "clip", "--model", "model", "--limit", "20", "--runs-dir", "runs")
    assert vlbench_here(*args, cwd=tmp_path)[0] == 0
    before = stored(tmp_path)
    weights = tmp_path / "model" / "open_clip_model.safetensors"
    state = load_file(weights)
    state["text_projection"] = -state["text_projection"]  # same shapes, other weights
    save_file(state, weights)

    code, _, err = vlbench_here(*args, cwd=tmp_path)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith("error: weights of --model model changed since these scores were stored (sha256 ") and line.endswith(HINT), err
    assert stored(tmp_path) == before, "a refused attempt rewrites nothing"

    assert vlbench_here(*args, "--restart", cwd=tmp_path)[0] == 0
    record = results_of(tmp_path)
    assert record["timings"]["examples_scored"] == 20 and record["timings"]["examples_resumed"] == 0
    assert record["matcher"]["fingerprint"]["weights_sha256"] != json.loads(before[0])["matcher"]["fingerprint"]["weights_sha256"]
    assert len(record["provenance"]["sessions"]) == 1, "the discarded run's sessions went with it"


class FileWeighted(Matcher):
    """A plugin-like matcher whose one weight is the number in the `--model` file (no hashing of its own)."""

    name = "file-weighted"
    summary = "Test matcher: image slot times the weight read from --model."
    uses_model = True

    def score(self, images, texts):
        model = Path(self.runtime.model)
        weight = float((model / "weight.txt" if model.is_dir() else model).read_text())
        return torch.tensor([[weight * float(image.key.endswith("-0")) for _ in texts] for image in images])


@pytest.mark.parametrize("as_folder", [False, True], ids=["file", "folder"])
def test_a_plugin_matcher_s_local_model_is_hashed_and_other_weights_refuse_to_resume(tmp_path, monkeypatch, as_folder):
    registered(monkeypatch, FileWeighted)
    weights = tmp_path / "model" / "weight.txt" if as_folder else tmp_path / "weight.txt"
    weights.parent.mkdir(exist_ok=True)
    weights.write_text("1.0")
    values = {"task": "colors", "matcher": "file-weighted", "model": str(weights.parent if as_folder else weights), "runs_dir": str(tmp_path / "runs"), "task_options": {"n_examples": 6}}
    first = run(prepare(load_run_config(None, values)), 0)
    (weights.parent / ".lock").write_text("not weights")  # hidden files are not hashed
    assert run(prepare(load_run_config(None, values)), 0).results["timings"]["examples_resumed"] == 6
    weights.write_text("-1.0")
    with pytest.raises(VlbenchError, match=r"weights of --model .* changed since these scores were stored \(sha256 "):
        run(prepare(load_run_config(None, values)), 0)
    assert "weights_sha256" in first.results["matcher"]["fingerprint"]
    identity = first.run_dir / "identity.json"  # as a vlbench that did not hash a plugin's --model stored it
    record = json.loads(identity.read_text())
    del record["inputs"]["matcher"]["fingerprint"]["weights_sha256"]
    identity.write_text(json.dumps(record))
    with pytest.raises(VlbenchError, match=r"stored by an older vlbench, which did not hash the files of --model .*: it cannot show whether the weights changed since"):
        run(prepare(load_run_config(None, values)), 0)


def plugin_source(root, version, sign):
    """A one-file matcher distribution, `vlbench-signed`: it prefers the first image (sign 1) or the
    second (sign -1), so the two versions' accuracies on `colors` add up to 1."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "vlbench-signed"\nversion = "{version}"\n'
        '[project.entry-points."vlbench.matchers"]\nsigned = "vlbench_signed:Signed"\n'
    )
    (root / "vlbench_signed.py").write_text(
        "import torch\nfrom vlbench.types import Matcher\n\n"
        "class Signed(Matcher):\n"
        "    name = 'signed'\n    summary = 'Test plugin: prefers one image slot.'\n\n"
        "    def score(self, images, texts):\n"
        f"        return {sign} * torch.tensor([[float(i.key.endswith('-0')) for t in texts] for i in images])\n"
    )
    return root


def test_an_upgraded_plugin_refuses_to_resume(tmp_path):
    site = tmp_path / "site"
    environment = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}

    def install(version, sign):
        source = plugin_source(tmp_path / f"src-{version}", version, sign)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--upgrade", "--target", str(site), str(source)], check=True, capture_output=True)

    def vlbench(*extra):
        return subprocess.run([sys.executable, "-m", "vlbench", "run", "--task", "colors", "--matcher", "signed", "--runs-dir", "runs", *extra], cwd=tmp_path, env=environment, capture_output=True, text=True)

    install("0.1.0", 1)
    assert vlbench().returncode == 0
    before = stored(tmp_path)
    install("0.2.0", -1)
    refused = vlbench()
    run_dir = next((tmp_path / "runs").rglob("results.json")).parent.relative_to(tmp_path)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"error: matcher 'signed' comes from vlbench-signed 0.2.0 now, from vlbench-signed 0.1.0 when these scores were stored, in {run_dir}{HINT}"
    ]
    assert stored(tmp_path) == before
    assert vlbench("--restart").returncode == 0
    old, new = json.loads(before[0]), results_of(tmp_path)
    assert new["matcher"]["distribution_version"] == "0.2.0"
    assert new["metrics"]["accuracy"] == pytest.approx(1 - old["metrics"]["accuracy"]) and old["metrics"]["accuracy"] == 0.495


def test_an_edited_plugin_refuses_to_resume_naming_its_file(tmp_path, monkeypatch):
    """An edit that keeps the plugin's versions: its package's files are part of the run's identity, as vlbench's are."""
    import importlib

    package = tmp_path / "site" / "edited_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    source = plugin_source(tmp_path / "src", "0.1.0", 1) / "vlbench_signed.py"
    (package / "signed.py").write_text(source.read_text())
    monkeypatch.syspath_prepend(tmp_path / "site")
    registered(monkeypatch, importlib.import_module("edited_plugin.signed").Signed)
    values = {"task": "colors", "matcher": "signed", "runs_dir": str(tmp_path / "runs"), "task_options": {"n_examples": 6}}
    first = run(prepare(load_run_config(None, values)), 0)
    assert "edited_plugin/signed.py" in json.loads((first.run_dir / "identity.json").read_text())["inputs"]["code"]
    (package / "added.py").write_text("")
    with pytest.raises(VlbenchError, match=r"^edited_plugin's code changed since these scores were stored \(edited_plugin/added\.py is new\)"):
        run(prepare(load_run_config(None, values)), 0)
    (package / "added.py").unlink()
    (package / "signed.py").write_text(source.read_text().replace("return 1 *", "return -1 *"))
    with pytest.raises(VlbenchError, match=r"^edited_plugin's code changed since these scores were stored \(edited_plugin/signed\.py differs\)"):
        run(prepare(load_run_config(None, values)), 0)


def test_a_plugin_in_a_namespace_package_is_hashed_by_its_own_package_and_a_script_s_by_its_class(tmp_path, monkeypatch):
    """Another distribution's portion of the namespace, or a script's other lines (its seeds, say),
    do not change the run's identity; the class, and the helpers and constants of the script its
    methods name, do."""
    import importlib.util
    import linecache

    from vlbench.provenance import component_sources

    signed = plugin_source(tmp_path / "src", "0.1.0", 1) / "vlbench_signed.py"
    for portion in ("vlplugin", "other"):
        (tmp_path / "site" / "acme" / portion).mkdir(parents=True)
        (tmp_path / "site" / "acme" / portion / "__init__.py").write_text("")
    (tmp_path / "site" / "acme" / "vlplugin" / "signed.py").write_text(signed.read_text())
    monkeypatch.syspath_prepend(tmp_path / "site")
    import acme.vlplugin.signed

    assert list(component_sources(acme.vlplugin.signed.Signed)) == ["acme.vlplugin/__init__.py", "acme.vlplugin/signed.py"]
    script = tmp_path / "evaluate.py"
    script.write_text(signed.read_text() + "\nseeds = [0, 1]\n")
    spec = importlib.util.spec_from_file_location("__main__", script)
    main = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "__main__", main)
    spec.loader.exec_module(main)
    before = component_sources(main.Signed)
    assert list(before) == ["__main__:Signed"]
    script.write_text(signed.read_text() + "\nseeds = [0, 1, 2]\n")
    linecache.checkcache(str(script))
    assert component_sources(main.Signed) == before
    script.write_text(signed.read_text().replace("return 1 *", "return -1 *"))
    linecache.checkcache(str(script))
    assert component_sources(main.Signed) != before

    def with_helper(scale: str = "1.0", helper: str = "x", seeds: str = "[0, 1]") -> dict:
        """The class's score under a decorator, a class attribute from a constant, a helper, a
        lambda in a dict (whose repr differs by process), and the script's seeds."""
        matcher = signed.read_text().replace("    def score(", "    sign = SIGN\n\n    @torch.no_grad()\n    def score(").replace("return 1 *", "return self.sign * ACTIONS['scale'](1) *")
        constants = f"SIGN = {scale}\nACTIONS = {{'scale': lambda x: scaled(x)}}\n\n\nclass Signed("
        script.write_text(matcher.replace("class Signed(", constants) + f"\n\ndef scaled(x):\n    return {helper}\n\n\nseeds = {seeds}\n")
        linecache.checkcache(str(script))
        loaded = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, "__main__", loaded)
        spec.loader.exec_module(loaded)
        return component_sources(loaded.Signed)

    helped = with_helper()
    assert with_helper() == helped and with_helper(seeds="[0, 1, 2]") == helped
    assert with_helper(helper="2 * x") != helped and with_helper(scale="-1.0") != helped


def comvg_copy(root, caption_change=None):
    """A ComVG data root: the real csv's first 12 rows (optionally one caption changed)."""
    lines = REAL_COMVG_CSV.read_text().splitlines()[:13]
    if caption_change:
        lines[3] = lines[3].replace(*caption_change)
    source = root.parent / f"{root.name}.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("\n".join(lines) + "\n")
    return comvg_root(root, source)


@pytest.mark.parametrize("where", ["in place", "another root"])
def test_changed_data_under_the_same_ids_refuses_to_resume(tmp_path, vlbench_here, where):
    comvg_copy(tmp_path / "data")
    args = ("run", "--task", "comvg", "--matcher", "random", "--runs-dir", "runs")
    assert vlbench_here(*args, "--data-root", "data", cwd=tmp_path)[0] == 0
    before = stored(tmp_path)
    changed = comvg_copy(tmp_path / ("data" if where == "in place" else "other"), caption_change=("a man is sitting", "a man is standing"))
    code, _, err = vlbench_here(*args, "--data-root", changed.name, cwd=tmp_path)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith("error: the data of task 'comvg' changed since these scores were stored (examples fingerprint ") and line.endswith(HINT), err
    old, new = re.search(r"; example '[^']+': its texts \[\"([^\]]*)\"\] → \[\"([^\]]*)\"\]\), in ", line).groups()  # where, from the stored records
    assert old.startswith("a man is sitting") and new.startswith("a man is standing"), line
    assert stored(tmp_path) == before


@pytest.mark.parametrize("other", ["seed", "matcher"])
def test_a_board_of_runs_on_data_edited_between_them_is_refused(tmp_path, vlbench_here, other):
    """ComVG's examples do not depend on the seed, so every run on its data must have evaluated the
    same pool; a caption edited between two runs (each resumable on its own) makes the board refuse."""
    comvg_copy(tmp_path / "data")
    args = ("run", "--task", "comvg", "--runs-dir", "runs", "--data-root", "data")
    assert vlbench_here(*args, "--matcher", "random", cwd=tmp_path)[0] == 0
    comvg_copy(tmp_path / "data", caption_change=("a man is sitting", "a man is standing"))
    second = ("--matcher", "random", "--seed", "1") if other == "seed" else ("--matcher", "color-words")
    assert vlbench_here(*args, *second, cwd=tmp_path)[0] == 0
    code, _, err = vlbench_here("leaderboard", "runs", cwd=tmp_path)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith("error: comvg: runs/comvg/") and "evaluated different data (every seed should see the same examples; fingerprints " in line, err
    old, new = re.search(r"fingerprints (\S+) → (\S+)\)", line).groups()
    assert old != new and not old.startswith("image-bytes"), line
    assert line.endswith("the data changed between them; rerun the older runs (vlbench run --restart) or keep them in separate runs directories")
    comvg_copy(tmp_path / "data")  # the data as the first run saw it: the second run, rerun on it, agrees
    assert vlbench_here(*args, *second, "--restart", cwd=tmp_path)[0] == 0
    assert vlbench_here("leaderboard", "runs", cwd=tmp_path)[0] == 0


def test_an_image_replaced_by_one_of_the_same_size_refuses_to_resume(tmp_path, vlbench_here):
    root = comvg_copy(tmp_path / "data")
    args = ("run", "--task", "comvg", "--matcher", "random", "--runs-dir", "runs", "--data-root", "data")
    assert vlbench_here(*args, cwd=tmp_path)[0] == 0
    before = stored(tmp_path)
    images = sorted((root / "vg_concept").iterdir())
    image, other = next((a, b) for a, b in itertools.combinations(images, 2) if a.stat().st_size == b.stat().st_size and a.read_bytes() != b.read_bytes())
    image.write_bytes(other.read_bytes())
    code, _, err = vlbench_here(*args, cwd=tmp_path)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith("error: the data of task 'comvg' changed since these scores were stored (examples fingerprint ") and line.endswith(HINT), err
    assert "; the 12 stored examples' texts, image keys, matching pairs and tags are unchanged: an image file's bytes or an image's crop changed, or examples not scored yet or in the training pool did), in " in line, line
    assert stored(tmp_path) == before


def test_where_changed_data_differs_is_the_first_stored_example_that_changed():
    from vlbench.identity import first_changed_example
    from vlbench.records import ScoredExample
    from vlbench.types import Example, ImageRef

    def example(example_id, text="a red square", positives=((0, 0),), tags=None):
        return Example(example_id, (ImageRef("i1", render=lambda: None), ImageRef("i2", render=lambda: None)), (text,), positives, tags or {"kind": "color"})

    stored = {example_id: {"id": example_id, "texts": ["a red square"], "images": [{"key": "i1"}, {"key": "i2"}]} for example_id in ("a", "b")}
    scored = {example_id: ScoredExample(example_id, [[0.0], [1.0]], [[0, 0]], {"kind": "color"}) for example_id in ("a", "b")}
    assert first_changed_example(stored, scored, [example("a"), example("b", text="a blue square")]) == 'example \'b\': its texts ["a red square"] → ["a blue square"]'
    assert first_changed_example(stored, scored, [example("a", positives=((1, 0),)), example("b")]) == "example 'a': its matching pairs [[0, 0]] → [[1, 0]]"
    assert first_changed_example(stored, scored, [example("a"), example("b", tags={"kind": "shape"})]) == 'example \'b\': its tags {"kind": "color"} → {"kind": "shape"}'
    assert first_changed_example(stored, scored, [example("b")]) == "stored example 'a' is no longer in the data"
    assert first_changed_example(stored, {}, [example("a", positives=((1, 0),)), example("b")]).startswith("the 2 stored examples' texts, image keys, matching pairs and tags are unchanged"), "no scores: pairs unknown"


def test_a_run_fingerprinted_by_image_sizes_is_refused_with_the_reason(tmp_path, vlbench_here):
    comvg_copy(tmp_path / "data")
    args = ("run", "--task", "comvg", "--matcher", "random", "--runs-dir", "runs", "--data-root", "data")
    assert vlbench_here(*args, cwd=tmp_path)[0] == 0
    (identity,) = (tmp_path / "runs").rglob("identity.json")
    record = json.loads(identity.read_text())
    record["inputs"]["task"]["data"] = "0" * 64  # a size-based fingerprint: another hash, no prefix
    identity.write_text(json.dumps(record))
    code, _, err = vlbench_here(*args, cwd=tmp_path)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith("error: these scores were stored by an older vlbench, which fingerprinted the data of task 'comvg' by its image files' sizes, not their bytes"), err


def test_an_old_fingerprint_of_data_without_image_files_still_resumes(tmp_path, vlbench_here):
    """Images a task renders (colors; Winoground from its hashed parquet files) were never
    fingerprinted by size: the older fingerprint is the same hash without the prefix."""
    args = ("run", "--task", "colors", "--matcher", "random", "--runs-dir", "runs")
    assert vlbench_here(*args, cwd=tmp_path)[0] == 0
    (identity,) = (tmp_path / "runs").rglob("identity.json")
    record = json.loads(identity.read_text())
    record["inputs"]["task"]["data"] = record["inputs"]["task"]["data"].removeprefix("image-bytes:")
    identity.write_text(json.dumps(record))
    assert vlbench_here(*args, cwd=tmp_path)[0] == 0


def test_a_copy_of_the_same_data_elsewhere_resumes_and_both_roots_are_recorded(tmp_path, vlbench_here):
    comvg_copy(tmp_path / "data")
    args = ("run", "--task", "comvg", "--matcher", "random", "--runs-dir", "runs")
    assert vlbench_here(*args, "--data-root", "data", "--limit", "6", cwd=tmp_path)[0] == 0
    shutil.copytree(tmp_path / "data", tmp_path / "copy")
    (scores,) = (tmp_path / "runs").rglob("scores.jsonl")
    kept = scores.read_text().splitlines()[:3]
    scores.write_text("\n".join(kept) + "\n")  # as if killed after 3 examples
    (scores.parent / "results.json").unlink()
    assert vlbench_here(*args, "--data-root", "copy", "--limit", "6", cwd=tmp_path)[0] == 0
    record = results_of(tmp_path)
    assert record["timings"]["examples_resumed"] == 3 and record["timings"]["examples_scored"] == 3
    roots = [session["data_root"] for session in record["provenance"]["sessions"]]
    assert roots == [str(tmp_path / "data"), str(tmp_path / "copy")]


def test_another_library_version_refuses_to_resume(tmp_path, vlbench_here, monkeypatch):
    """Pillow decodes the pixels every matcher reads: scores stored under one version are not
    resumed under another."""
    from vlbench import provenance

    args = ("run", "--task", "colors", "--matcher", "random", "--runs-dir", "runs")
    assert vlbench_here(*args, cwd=tmp_path)[0] == 0
    identity = next((tmp_path / "runs").rglob("identity.json"))
    record = json.loads(identity.read_text())
    del record["inputs"]["libraries"]  # as stored before identities named them: the sessions did
    identity.write_text(json.dumps(record))
    assert vlbench_here(*args, cwd=tmp_path)[0] == 0
    before = stored(tmp_path)
    installed = provenance.library_version
    monkeypatch.setattr(provenance, "library_version", lambda name: "0.0.1" if name == "pillow" else installed(name))
    code, _, err = vlbench_here(*args, cwd=tmp_path)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith(f"error: pillow is at version 0.0.1 now, at {installed('pillow')} when these scores were stored") and line.endswith(HINT), err
    assert stored(tmp_path) == before


def edited_sources(monkeypatch, name="vlbench.matchers/random.py"):
    """vlbench's source files as after an edit of `name` (another commit, an uncommitted change)."""
    from vlbench import provenance

    files = {**provenance.source_files_sha256(), name: "0" * 64}
    monkeypatch.setattr(provenance, "source_files_sha256", lambda: files)


def test_the_scoring_sources_are_the_same_for_an_editable_install_and_a_wheel_and_leave_out_the_cli_and_boards(tmp_path):
    import importlib.util

    from vlbench.provenance import SCORING_PACKAGES, scoring_sources, source_files_sha256

    editable = {package: Path(importlib.util.find_spec(package).submodule_search_locations[0]) for package in SCORING_PACKAGES}
    wheel = tmp_path / "site-packages" / "vlbench"  # a wheel's layout: every package inside vlbench/
    shutil.copytree(editable["vlbench"], wheel, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(editable["vlbench.matchers"], wheel / "matchers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(editable["vlbench.tasks"], wheel / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(Path(importlib.util.find_spec("vlbench.leaderboard").submodule_search_locations[0]), wheel / "leaderboard", ignore=shutil.ignore_patterns("__pycache__"))
    folders = {"vlbench": wheel, "vlbench.matchers": wheel / "matchers", "vlbench.tasks": wheel / "tasks"}
    assert scoring_sources(folders) == source_files_sha256()
    (wheel / "cli" / "app.py").write_text("# a changed command line\n")
    (wheel / "leaderboard" / "tables.py").write_text("# a changed board\n")
    (wheel / "stats.py").write_text("# a changed interval over seeds\n")
    assert scoring_sources(folders) == source_files_sha256(), "the command line and boards do not compute scores"
    (wheel / "matchers" / "random.py").write_text("# a changed matcher\n")
    assert scoring_sources(folders) != source_files_sha256()


def test_no_hashed_module_imports_a_module_the_source_hash_leaves_out():
    """`NOT_SCORING` holds only what scores cannot depend on: no module whose edit refuses stored
    runs imports one of them (but `api`, whose summary over seeds is not stored)."""
    import importlib.util
    import re

    from vlbench.provenance import NOT_SCORING, SCORING_PACKAGES, source_files_sha256

    left_out = "|".join(name.removesuffix(".py") for name in NOT_SCORING)
    importing = re.compile(rf"(from vlbench\.({left_out})\b|from vlbench import .*\b({left_out})\b|import vlbench\.({left_out})\b)")
    folders = {package: Path(importlib.util.find_spec(package).submodule_search_locations[0]) for package in SCORING_PACKAGES}
    importers = sorted(name for name in source_files_sha256() if importing.search((folders[name.split("/")[0]] / name.split("/", 1)[1]).read_text()))
    assert importers == ["vlbench/api.py"]


def test_scores_stored_by_other_code_of_the_same_version_are_refused_to_resume_naming_the_file(tmp_path, vlbench_here, monkeypatch):
    args = ("run", "--task", "colors", "--matcher", "random", "--runs-dir", "runs")
    assert vlbench_here(*args, cwd=tmp_path)[0] == 0
    before = stored(tmp_path)
    edited_sources(monkeypatch)
    code, _, err = vlbench_here(*args, cwd=tmp_path)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith("error: vlbench's code changed since these scores were stored (vlbench.matchers/random.py differs), in ") and line.endswith(HINT), err
    assert stored(tmp_path) == before
    identity = next((tmp_path / "runs").rglob("identity.json"))
    record = json.loads(identity.read_text())
    del record["inputs"]["code"]  # as an older vlbench stored it
    identity.write_text(json.dumps(record))
    code, _, err = vlbench_here(*args, cwd=tmp_path)
    assert code == 2 and "these scores were stored by an older vlbench, which did not record its source files: it cannot show whether the code that computed them changed since" in err


def test_a_board_refuses_to_average_seeds_computed_by_different_code(tmp_path, vlbench_here, monkeypatch):
    args = ("run", "--task", "colors", "--matcher", "random", "--runs-dir", "runs")
    assert vlbench_here(*args, cwd=tmp_path)[0] == 0
    edited_sources(monkeypatch)
    assert vlbench_here(*args, "--seed", "1", cwd=tmp_path)[0] == 0
    code, _, err = vlbench_here("leaderboard", "runs", cwd=tmp_path)
    line = err.strip().splitlines()[-1]
    assert code == 2 and "seeds 0 and 1 were computed from different inputs (code: vlbench.matchers/random.py differs), so they cannot be averaged" in line, err
    (identity,) = tmp_path.rglob("seed-1/identity.json")
    identity.unlink()  # no record of the files: the hash of them all is what differs
    code, _, err = vlbench_here("leaderboard", "runs", cwd=tmp_path)
    line = err.strip().splitlines()[-1]
    assert code == 2 and re.search(r"seeds 0 and 1 were computed from different inputs \(code\.sources_sha256: \"[0-9a-f]{28}…[0-9a-f]{28}\" → \"[0-9a-f]{28}…[0-9a-f]{28}\"\), so they cannot be averaged", line), err


def test_scores_stored_without_a_record_of_their_inputs_are_refused(tmp_path, vlbench_here):
    args = ("run", "--task", "colors", "--matcher", "random", "--runs-dir", "runs")
    assert vlbench_here(*args, cwd=tmp_path)[0] == 0
    next((tmp_path / "runs").rglob("identity.json")).unlink()
    code, _, err = vlbench_here(*args, cwd=tmp_path)
    assert code == 2 and "stored without a record of their inputs (an older vlbench)" in err


@pytest.mark.parametrize("other", ["configuration", "seed"])
def test_a_run_directory_copied_to_another_run_s_place_is_refused(tmp_path, vlbench_here, other):
    # The copy is cut short (5 scores kept, no results) and has no split record; the other run
    # shares every input (data, weights, code), only its configuration or seed differs.
    args = ("run", "--task", "colors", "--matcher", "random", "--runs-dir", "runs")
    theirs = ("--limit", "20") if other == "configuration" else ("--seed", "1")
    for extra in ((), theirs):
        assert vlbench_here(*args, *extra, cwd=tmp_path)[0] == 0
    def directory(limit=None, seed=0):
        return next(path.parent for path in (tmp_path / "runs").rglob(f"seed-{seed}/config.yaml") if f"limit: {limit or 'null'}" in path.read_text())

    source, target = (directory(limit=20), directory()) if other == "configuration" else (directory(), directory(seed=1))
    shutil.rmtree(target)
    shutil.copytree(source, target)
    for name in ("results.json", "split.json"):
        (target / name).unlink()
    scores = (target / "scores.jsonl").read_text().splitlines(keepends=True)
    (target / "scores.jsonl").write_text("".join(scores[:5]))
    code, _, err = vlbench_here(*args, *(theirs if other == "seed" else ()), cwd=tmp_path)
    assert code == 2 and f"{target.relative_to(tmp_path)} holds the records of another run (configuration " in err and err.strip().endswith("as if copied or moved here" + HINT), err


def test_files_get_the_umask_s_mode_not_0600(tmp_path, vlbench_here):
    umask = os.umask(0o022)
    os.umask(umask)
    assert vlbench_here("run", "--task", "colors", "--matcher", "clip-ft", "--model", "mini", "--shots", "5%", "--limit", "4", "--runs-dir", "runs", cwd=tmp_path)[0] == 0
    (run_dir,) = {path.parent for path in (tmp_path / "runs").rglob("results.json")}
    for name in ("results.json", "config.yaml", "split.json", "state.pt", "identity.json"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_image_hashes_are_read_once_then_cached_per_directory_until_a_file_changes(tmp_path, monkeypatch, settled):
    from vlbench import hashing

    monkeypatch.setenv("VLBENCH_CACHE", str(tmp_path / "cache"))
    images = [tmp_path / "images" / name for name in ("a.png", "b.png")]
    images[0].parent.mkdir()
    for image, content in zip(images, (b"first", b"other")):
        image.write_bytes(content)
    read = []
    sha256 = hashing._sha256
    monkeypatch.setattr(hashing, "_sha256", lambda path: read.append(path.name) or sha256(path))
    first = hashing.many_files_sha256(images)
    assert read == ["a.png", "b.png"] and hashing.many_files_sha256(images) == first and read == ["a.png", "b.png"]
    assert len(list((tmp_path / "cache" / "hashes").iterdir())) == 1  # one cache file for the directory
    images[1].write_bytes(b"again")  # same size, other bytes
    stat = images[1].stat()
    os.utime(images[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = hashing.many_files_sha256(images)
    assert read == ["a.png", "b.png", "b.png"] and second[images[0]] == first[images[0]] and second[images[1]] != first[images[1]]


def test_a_file_hashed_within_its_timestamps_granularity_is_hashed_again_after_a_rewrite_that_keeps_them(tmp_path, monkeypatch):
    """On a file system whose clock did not tick between two writes, the second keeps the file's
    inode, size and times: a hash taken in that tick is not cached, so the rewrite is seen."""
    from vlbench import hashing

    monkeypatch.setenv("VLBENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "a.bin"
    path.write_bytes(b"first")
    written = path.stat()
    coarse = [written.st_ino, written.st_size, written.st_mtime_ns, written.st_ctime_ns]
    monkeypatch.setattr(hashing, "_stamp", lambda _: coarse)  # what stat says after either write
    monkeypatch.setattr(hashing, "now_ns", lambda: max(coarse[2:]) + hashing.SETTLED_NS - 1)  # hashed before the file settled
    first, single = hashing.many_files_sha256([path])[path], hashing.file_sha256(path)
    assert hashing.known_sha256(path) is None
    path.write_bytes(b"other")
    assert hashing.many_files_sha256([path])[path] == hashing.file_sha256(path) != first == single

    monkeypatch.setattr(hashing, "now_ns", lambda: max(coarse[2:]) + hashing.SETTLED_NS)  # hashed once settled: kept
    assert hashing.many_files_sha256([path])[path] == hashing.known_sha256(path) == hashing.file_sha256(path) != first
    assert len(list((tmp_path / "cache" / "hashes").iterdir())) == 2  # the directory's cache file and the file's


@pytest.mark.parametrize(("kind", "change"), [("matcher", "how it scores"), ("task", "what its examples or metrics are")])
def test_a_component_s_version_bump_refuses_to_resume_saying_what_it_changed(tmp_path, monkeypatch, kind, change):
    from vlbench import registry

    values = {"task": "colors", "matcher": "color-words", "runs_dir": str(tmp_path / "runs"), "task_options": {"n_examples": 4}}
    run(prepare(load_run_config(None, values)), 0)
    component = registry.matchers.get("color-words") if kind == "matcher" else registry.tasks.get("colors")
    monkeypatch.setattr(component, "version", f"{component.version}-next")
    name = "color-words" if kind == "matcher" else "colors"
    with pytest.raises(VlbenchError, match=re.escape(f"{kind} '{name}' changed {change} (version {component.version.removesuffix('-next')} → {component.version}) since these scores were stored")):
        run(prepare(load_run_config(None, values)), 0)


def test_a_short_fingerprint_shows_each_hash_a_task_adds():
    """Winoground adds its parquet files' hashes: two fingerprints differing there alone must not read alike."""
    from vlbench.identity import IMAGE_BYTES, short_fingerprint

    examples, before, after = "a" * 64, "b" * 64, "c" * 64
    assert short_fingerprint(f"{IMAGE_BYTES}{examples}:{before}") == f"{'a' * 12}…:{'b' * 12}…"
    assert short_fingerprint(f"{IMAGE_BYTES}{examples}:{before}") != short_fingerprint(f"{IMAGE_BYTES}{examples}:{after}")
    assert short_fingerprint(None) == "none"


def test_a_matcher_s_libraries_are_recorded_by_their_normalised_names_and_an_unknown_one_is_refused():
    from types import SimpleNamespace

    from vlbench.provenance import scoring_libraries

    listed = SimpleNamespace(name="listing", library_versions=lambda: ["Pillow", "open_clip_torch"])
    assert sorted(scoring_libraries(listed)) == ["numpy", "open-clip-torch", "pillow", "torch"]  # Pillow is pillow, once
    typo = SimpleNamespace(name="listing", library_versions=lambda: ["open-clip"])
    with pytest.raises(VlbenchError, match=r"matcher 'listing': library_versions\(\) names 'open-clip', which is no installed distribution"):
        scoring_libraries(typo)


def test_pillow_installed_under_another_name_is_recorded_by_its_module_s_version(monkeypatch):
    """Pillow-SIMD installs PIL as another distribution: every run would be refused otherwise."""
    from types import SimpleNamespace

    import PIL

    from vlbench import provenance

    monkeypatch.setattr(provenance, "library_version", lambda name: None if name == "pillow" else "1.0")
    assert provenance.scoring_libraries(SimpleNamespace(name="plain", library_versions=lambda: []))["pillow"] == PIL.__version__


def test_processes_of_one_run_that_load_other_libraries_or_weights_are_named_with_what_differs():
    from vlbench.identity import ranks_disagreement

    inputs = {"matcher": {"name": "clip", "fingerprint": {"weights_sha256": "a" * 64}}, "task": {"name": "comvg", "data": "d" * 64}, "libraries": {"torch": "2.4.0"}, "code": {"vlbench/runner.py": "c" * 64}}
    process = lambda rank, inputs, data=None: {"rank": rank, "host": f"node-{rank // 2}", "inputs": inputs, "data": data}  # noqa: E731
    assert ranks_disagreement([process(0, inputs), process(1, inputs), process(2, inputs, "d" * 64)]) is None
    other_torch = {**inputs, "libraries": {"torch": "2.5.1"}}
    assert ranks_disagreement([process(0, inputs), process(1, inputs), process(2, other_torch)]) == (
        'the processes of this run compute from different inputs, rank 0 (on node-0) → rank 2 (on node-1): libraries.torch: "2.4.0" → "2.5.1"; '
        "every process must load the same model, code and libraries. Nothing was stored"
    )
    other_weights = {**inputs, "matcher": {"name": "clip", "fingerprint": {"weights_sha256": "b" * 64}}}
    assert "matcher.fingerprint.weights_sha256: " in ranks_disagreement([process(0, inputs), process(3, other_weights)])
    assert "has fingerprint eeeeeeeeeeee" in ranks_disagreement([process(0, inputs), process(2, inputs, "e" * 64)])


def test_the_first_difference_of_two_records_is_named_where_a_key_is_missing_or_a_number_changes_type():
    from vlbench.identity import first_difference

    assert first_difference({"z": {"a": None}}, {"z": {}}) == 'z: {"a": null} → {}'
    assert first_difference({"x": 1}, {"x": 1.0}) == "x: 1 → 1.0"  # as results.json stores them
    assert first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}) == "a[1].b: 2 → 3"
    assert first_difference({"a": [1, 2]}, {"a": [1, 2]}) is None
