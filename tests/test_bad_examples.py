import json

import pytest

from conftest import vlbench_cli
from placeholders import REAL_COMVG_CSV
from placeholders import comvg_root



@pytest.fixture
def small_comvg(tmp_path):
    """The first 20 rows of the real ComVG csv, with image 2357994 truncated."""
    source = tmp_path / "source.csv"
    source.write_text("\n".join(REAL_COMVG_CSV.read_text().splitlines()[:21]) + "\n")
    root = comvg_root(tmp_path / "comvg", source)
    broken = root / "vg_concept" / "2357994.jpg"
    broken.write_bytes(broken.read_bytes()[:40])
    return root


def test_a_corrupt_image_stops_the_run_and_names_example_and_file(small_comvg, tmp_path):
    result = vlbench_cli("run", "--task", "comvg", "--matcher", "random", "--data-root", str(small_comvg), cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: example 'comvg-1': image '2357994' at ") and "vg_concept/2357994.jpg cannot be read" in last


def test_skip_records_the_skipped_examples(small_comvg, tmp_path):
    vlbench_cli("run", "--task", "comvg", "--matcher", "random", "--data-root", str(small_comvg), "--on-bad-example", "skip", cwd=tmp_path)
    record = json.loads(next(tmp_path.rglob("results.json")).read_text())
    skipped = [item["id"] for item in record["skipped"]]
    csv_rows = (small_comvg / "compositional_visual_genome.csv").read_text().splitlines()[1:]
    expected = [f"comvg-{row.split(',')[0]}" for row in csv_rows if "2357994" in row]
    assert skipped == expected and len(skipped) > 0
    assert record["n"] == 20 - len(skipped)


def test_data_check_opens_every_image_and_names_each_broken_one(small_comvg, tmp_path):
    images = small_comvg / "vg_concept"
    (images / "2358258.jpg").unlink()  # missing
    (images / "2416600.jpg").write_bytes(b"")  # empty
    (images / "2400993.jpg").unlink()
    (images / "2400993.jpg").mkdir()  # a directory where the file should be
    # 2357994.jpg is truncated (the fixture)
    result = vlbench_cli("data", "check", "--task", "comvg", "--data-root", str(small_comvg), cwd=tmp_path, check=False)
    assert result.returncode == 1
    output = result.stdout.replace("\n", " ")
    total = len(list(images.iterdir())) + 1
    assert f"problem: 4 of {total} image files cannot be used" in output
    for name, reason in (("2358258.jpg", "missing"), ("2416600.jpg", "empty (0 bytes)"), ("2400993.jpg", "a directory, not an image file"), ("2357994.jpg", "cannot be decoded")):
        assert f"{name}: {reason}" in output, name
    assert "expected layout: <root>/compositional_visual_genome.csv" in output


def test_data_check_reports_what_a_run_would_refuse_in_the_examples(tmp_path):
    """A repeated id (two copies of the data under one root give one) passes the layout but not a run."""
    from vlbench.datacheck import check_data
    from vlbench.tasks.comvg import ComVGOptions, ComVGTask

    source = tmp_path / "source.csv"
    rows = REAL_COMVG_CSV.read_text().splitlines()[:4]
    source.write_text("\n".join([*rows, rows[1]]) + "\n")
    report = check_data(ComVGTask(ComVGOptions(), comvg_root(tmp_path / "comvg", source)))
    assert len(report.problems) == 1 and report.problems[0].startswith("task 'comvg': ") and "duplicate example id 'comvg-" in report.problems[0]


def test_an_unreadable_training_image_is_an_error_even_with_skip(small_comvg, tmp_path, monkeypatch):
    from support import LengthHead, registered
    from vlbench.config import load_run_config
    from vlbench.errors import VlbenchError
    from vlbench.runner import prepare, run

    registered(monkeypatch, LengthHead)
    for image in (small_comvg / "vg_concept").iterdir():
        image.write_bytes(b"")
    values = {"task": "comvg", "matcher": "length-head", "data_root": str(small_comvg), "shots": "5", "on_bad_example": "skip", "runs_dir": str(tmp_path / "runs")}
    with pytest.raises(VlbenchError, match=r"^training example 'comvg-\d+': image '\d+' at .* cannot be read.* \(--on-bad-example skip leaves out evaluation examples only: the split's training examples are all trained on\)$"):
        run(prepare(load_run_config(None, values)), 0)
