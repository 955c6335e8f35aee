"""`vlbench report --html`: built from run records alone, driven in headless Chromium."""

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import vlbench_cli
from vlbench.identity import RunIdentity

LIMIT = "24"


@pytest.fixture(scope="module")
def mini_runs(tmp_path_factory):
    """Zero-shot mini ComVG runs of clip and dsd (dsd with --save-attention) on the same split."""
    root = tmp_path_factory.mktemp("report-runs")
    vlbench_cli("run", "--task", "mini-comvg", "--matcher", "clip", "--model", "mini", "--limit", LIMIT, cwd=root)
    vlbench_cli("run", "--task", "mini-comvg", "--matcher", "dsd", "--model", "mini", "--limit", LIMIT, "--save-attention", cwd=root)
    return root / "runs"


def run_dir(runs: Path, matcher: str) -> Path:
    (results,) = (runs / "mini-comvg" / matcher).rglob("results.json")
    return results.parent


def right_ids(runs: Path, matcher: str) -> set[str]:
    """ComVG is right when the positive image (0) outscores the negative on the sentence."""
    lines = (run_dir(runs, matcher) / "scores.jsonl").read_text().splitlines()
    return {record["id"] for record in map(json.loads, lines) if record["scores"][0][0] > record["scores"][1][0]}


def tagged(runs: Path, tag: str, value: str) -> set[str]:
    lines = (run_dir(runs, "clip") / "scores.jsonl").read_text().splitlines()
    return {record["id"] for record in map(json.loads, lines) if record["tags"].get(tag) == value}


def flat_scores(records: list[dict]) -> list[float]:
    return [value for record in records for row in record["scores"] for value in row]


def test_saved_attention_holds_a_map_per_real_token_and_leaves_scores_unchanged(mini_runs, tmp_path):
    vlbench_cli("run", "--task", "mini-comvg", "--matcher", "dsd", "--model", "mini", "--limit", LIMIT, "--runs-dir", str(tmp_path / "plain"), cwd=tmp_path)
    plain = [json.loads(line) for line in (run_dir(tmp_path / "plain", "dsd") / "scores.jsonl").read_text().splitlines()]
    saving = run_dir(mini_runs, "dsd")
    saved = [json.loads(line) for line in (saving / "scores.jsonl").read_text().splitlines()]
    assert [record["id"] for record in saved] == [record["id"] for record in plain]
    assert flat_scores(saved) == pytest.approx(flat_scores(plain), abs=1e-6), "--save-attention changed the scores"
    assert not (run_dir(tmp_path / "plain", "dsd") / "attention.jsonl").exists()

    records = [json.loads(line) for line in (saving / "attention.jsonl").read_text().splitlines()]
    texts = {record["id"]: record["texts"] for record in map(json.loads, (saving / "examples.jsonl").read_text().splitlines())}
    assert len(records) == int(LIMIT)
    for record in records:
        assert [(pair["image"], pair["text"]) for pair in record["pairs"]] == [(0, 0), (1, 0)]
        for pair in record["pairs"]:
            words = texts[record["id"]][pair["text"]].split()
            assert pair["tokens"] == ["<|startoftext|>", *words, "<|endoftext|>"]
            maps = base64.b64decode(pair["maps"])
            assert len(maps) == len(pair["tokens"]) * record["size"] ** 2
            per_token = [maps[index : index + record["size"] ** 2] for index in range(0, len(maps), record["size"] ** 2)]
            assert all(min(values) == 0 and max(values) == 255 for values in per_token)


def test_each_image_s_thumbnail_is_stored_once_even_across_a_resume(mini_runs, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(mini_runs, runs)
    run = run_dir(runs, "clip")
    lines = (run / "scores.jsonl").read_text().splitlines(keepends=True)
    (run / "scores.jsonl").write_text("".join(lines[: len(lines) // 2]))
    vlbench_cli("run", "--task", "mini-comvg", "--matcher", "clip", "--model", "mini", "--limit", LIMIT, "--runs-dir", str(runs), cwd=tmp_path)
    assert len((run / "scores.jsonl").read_text().splitlines()) == int(LIMIT), "the run resumed"
    thumbnails = [json.loads(line)["id"] for line in (run / "thumbnails.jsonl").read_text().splitlines()]
    keys = {image["key"] for line in (run / "examples.jsonl").read_text().splitlines() for image in json.loads(line)["images"]}
    assert sorted(thumbnails) == sorted(keys)


def test_an_image_shared_by_examples_has_one_thumbnail(tmp_path):
    from PIL import Image

    from vlbench.example_records import example_recorder
    from vlbench.records import RunDirectory
    from vlbench.types import Example, ImageRef, LoadedImage

    def example(index, keys):
        return Example(f"e{index}", tuple(ImageRef(key, path=tmp_path / key) for key in keys), ("a text",), ((0, 0),))

    def loaded(keys):
        return [LoadedImage(key, Image.new("RGB", (8, 8), (int(key), 0, 0))) for key in keys]

    batches = [[(example(0, "12"), loaded("12")), (example(1, "13"), loaded("13"))], [(example(2, "31"), loaded("31"))]]
    for rank in (None, 1):
        run = RunDirectory(tmp_path / f"rank-{rank}")
        run.path.mkdir()
        with example_recorder(run, rank, matcher=None, thumbnails=True, save_attention=False) as recorder:
            for _, images in batches[0]:
                recorder.prepare(images)  # as the loading threads do: encoded ahead of the record
            for batch in batches:
                recorder.record(batch)
        stored = [json.loads(line)["id"] for path in run.path.glob("thumbnails*.jsonl") for line in path.read_text().splitlines()]
        assert stored == ["1", "2", "3"]
        assert sorted(run.read_lines("examples")) == ["e0", "e1", "e2"]


def test_save_attention_on_a_run_scored_without_it_says_so(mini_runs, tmp_path):
    shutil.copytree(mini_runs, tmp_path / "runs")
    (run,) = (tmp_path / "runs" / "mini-comvg" / "dsd").glob("*/seed-0")
    (run / "attention.jsonl").unlink()
    result = vlbench_cli("run", "--task", "mini-comvg", "--matcher", "dsd", "--model", "mini", "--limit", LIMIT, "--save-attention", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --save-attention: {run.relative_to(tmp_path)} already holds scores of {LIMIT} examples scored without keeping their maps, "
        "and finished examples are not scored again; use another --runs-dir, or --restart"
    ]


def test_save_attention_is_refused_for_a_matcher_without_maps(tmp_path):
    result = vlbench_cli("run", "--task", "colors", "--matcher", "random", "--save-attention", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --save-attention: matcher 'random' records no attention maps (those that do: dsd)"]


def test_the_report_needs_only_the_run_records(mini_runs, tmp_path):
    records = tmp_path / "records"
    shutil.copytree(mini_runs, records)
    # No mini-world data and no models: an empty cache, and the records moved away from their data.
    vlbench_cli("report", str(records), "--html", "site", cwd=tmp_path, env={"VLBENCH_CACHE": str(tmp_path / "empty-cache")})
    assert not (tmp_path / "empty-cache" / "miniworld").exists()
    index = (tmp_path / "site" / "index.html").read_text()
    assert "<h2>mini-comvg</h2>" in index and f'href="browse-mini-comvg-shots-0-seed-0-limit-{LIMIT}.html"' in index
    assert "plots/mini-comvg-shots.png" in index and (tmp_path / "site" / "plots" / "mini-comvg-shots.png").exists()
    script = (tmp_path / "site" / "data" / f"browse-mini-comvg-shots-0-seed-0-limit-{LIMIT}.js").read_text()
    group = json.loads(script.removeprefix("window.VLBENCH_GROUP = ").removesuffix(";\n"))
    assert [run["label"] for run in group["runs"]] == ["clip", "dsd"] and [run["has_attention"] for run in group["runs"]] == [False, True]
    assert len(group["examples"]) == int(LIMIT)
    for index, matcher in enumerate(("clip", "dsd")):
        assert {example["id"] for example in group["examples"] if example["runs"][index]["outcomes"]["accuracy"] == 1} == right_ids(mini_runs, matcher)
    keys = {image["key"] for example in group["examples"] for image in example["images"]}
    assert sorted(group["thumbnails"]) == sorted(keys)
    assert all(uri.startswith("data:image/jpeg;base64,") for uri in group["thumbnails"].values())
    # A report into the same directory without plots leaves none of the earlier ones, and no one else's file goes.
    (tmp_path / "site" / "notes.txt").write_text("mine")
    vlbench_cli("report", str(records), "--html", "site", "--no-plots", cwd=tmp_path, env={"VLBENCH_CACHE": str(tmp_path / "empty-cache")})
    assert not (tmp_path / "site" / "plots").exists() and (tmp_path / "site" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "site" / "index.html").exists() and "plots/" not in (tmp_path / "site" / "index.html").read_text()


def test_runs_of_a_task_whose_plugin_is_missing_are_on_the_board_and_listed_instead_of_browsed(mini_runs, tmp_path):
    records = tmp_path / "records"
    shutil.copytree(run_dir(mini_runs, "clip"), records / "elsewhere" / "seed-0")
    results = records / "elsewhere" / "seed-0" / "results.json"
    record = json.loads(results.read_text())
    record["task"].update(name="vanished-task", distribution="vlbench-vanished", distribution_version="0.3.0")
    identity = json.loads((results.parent / "identity.json").read_text())
    identity["config"]["task"] = "vanished-task"
    identity["config_id"] = record["config_id"] = RunIdentity(identity["config"], {}).config_id  # as that plugin's run stored it
    results.write_text(json.dumps(record))
    (results.parent / "identity.json").write_text(json.dumps(identity))
    vlbench_cli("report", str(records), "--html", "site", "--no-plots", cwd=tmp_path)
    index = (tmp_path / "site" / "index.html").read_text()
    assert "<h2>vanished-task</h2>" in index and "2 †" not in index and "<td>1 †</td>" in index  # on the board, taken as recorded
    assert "Not in an example browser" in index and "judging its examples needs the code of task &#x27;vanished-task&#x27;, from vlbench-vanished 0.3.0, which is not installed here" in index
    assert not list((tmp_path / "site").glob("browse-vanished-task*.html"))


def test_a_report_stopped_midway_leaves_a_directory_the_next_report_takes(mini_runs, tmp_path, monkeypatch):
    from vlbench.leaderboard import report

    def stopped(group):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(report, "group_data", stopped)
        with pytest.raises(KeyboardInterrupt):
            report.write_report([mini_runs], tmp_path / "site", plots=False)
    assert not (tmp_path / "site" / "index.html").exists() and (tmp_path / "site" / "report.css").exists()
    report.write_report([mini_runs], tmp_path / "site", plots=False)
    assert (tmp_path / "site" / "index.html").exists()


def chromium():
    """Headless Debian Chromium through its chromedriver (no browser download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def test_the_report_in_a_real_browser(mini_runs, tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("VLBENCH_REQUIRE_BROWSER"):
            pytest.fail("VLBENCH_REQUIRE_BROWSER is set but chromium or chromedriver is not on PATH (apt-get install chromium chromium-driver)")
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    vlbench_cli("report", str(mini_runs), "--html", "site", cwd=tmp_path)
    expected = right_ids(mini_runs, "clip") - right_ids(mini_runs, "dsd")
    assert expected, "the mini runs give no example where clip is right and dsd wrong"
    browser = chromium()
    try:
        browser.get((tmp_path / "site" / "index.html").as_uri())
        browser.find_element(By.LINK_TEXT, f"mini-comvg · shots 0 · seed 0 · limit {LIMIT}").click()
        WebDriverWait(browser, 30).until(lambda driver: driver.execute_script("const shown = document.getElementById('shown'); return shown !== null && shown.textContent !== ''"))
        Select(browser.find_element(By.ID, "right")).select_by_visible_text("clip")
        Select(browser.find_element(By.ID, "wrong")).select_by_visible_text("dsd")
        rows = browser.find_elements(By.CSS_SELECTOR, "#examples tbody tr")
        assert {row.get_attribute("data-id") for row in rows} == expected and len(rows) == len(expected)
        assert browser.find_element(By.ID, "shown").text == f"{len(expected)} of {LIMIT} examples shown"
        Select(browser.find_element(By.CSS_SELECTOR, "select[data-tag='neg_value']")).select_by_visible_text("verb")
        verbs = expected & tagged(mini_runs, "neg_value", "verb")
        assert {row.get_attribute("data-id") for row in browser.find_elements(By.CSS_SELECTOR, "#examples tbody tr")} == verbs
        Select(browser.find_element(By.CSS_SELECTOR, "select[data-tag='neg_value']")).select_by_visible_text("any")
        rows = browser.find_elements(By.CSS_SELECTOR, "#examples tbody tr")

        rows[0].click()
        loaded = "const maps = document.querySelectorAll('#detail img.heatmap'); return maps.length > 0 && [...maps].every((map) => map.complete && map.naturalWidth > 0)"
        WebDriverWait(browser, 30).until(lambda driver: driver.execute_script(loaded))
        assert browser.find_element(By.CSS_SELECTOR, "#detail h2").text == rows[0].get_attribute("data-id")
        artefacts = Path(os.environ.get("VLBENCH_ARTIFACTS", tmp_path))
        artefacts.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(artefacts / "report.png"))
        assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []
    finally:
        browser.quit()
