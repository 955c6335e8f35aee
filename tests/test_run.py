import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TESTS, vlbench_cli
from support import LengthHead, open_gate, registered, wait_until_paused
from vlbench import registry
from vlbench.config import load_run_config
from vlbench.errors import VlbenchError
from vlbench.rescore import rescore
from vlbench.runner import prepare, run
from vlbench.types import Matcher

EXAMPLES = TESTS.parent / "examples" / "vlbench-mean-color"


def run_once(tmp_path: Path, name: str = "runs", seed: int = 0, **overrides):
    values = {"task": "colors", "matcher": "color-words", "runs_dir": str(tmp_path / name), **overrides}
    config = load_run_config(None, values)
    return run(prepare(config), seed)


def score_lines(result) -> list[str]:
    return (result.run_dir / "scores.jsonl").read_text().splitlines()


def test_heuristic_metrics_are_exactly_predicted(tmp_path):
    result = run_once(tmp_path, task_options={"n_examples": 60})
    breakdown = result.results["breakdown"]["neg_value"]
    # Colour swaps: the negative has none of the named colour. Shape swaps: both images are
    # entirely that colour, a tie, and ties count as wrong.
    assert breakdown["color"]["accuracy"] == 1.0
    assert breakdown["shape"]["accuracy"] == 0.0
    assert result.results["metrics"]["accuracy"] == breakdown["color"]["n"] / 60


def test_same_command_twice_is_bit_identical_and_batch_size_changes_nothing(tmp_path):
    first = run_once(tmp_path, "a", batch_size=1, task_options={"n_examples": 30})
    second = run_once(tmp_path, "b", batch_size=7, task_options={"n_examples": 30})
    assert score_lines(first) == score_lines(second)
    assert first.results["metrics"] == second.results["metrics"]
    assert first.results["config_id"] == second.results["config_id"]
    assert first.run_dir.relative_to(tmp_path / "a") == second.run_dir.relative_to(tmp_path / "b")


def test_results_record_the_protocol_and_provenance(tmp_path):
    result = run_once(tmp_path, matcher="random", shots="10%", task_options={"n_examples": 40}, seed=3)
    record = json.loads((result.run_dir / "results.json").read_text())
    assert record["protocol"]["shots"] == "10%" and record["protocol"]["seed"] == 3
    assert record["protocol"]["n_train"] == 4 and record["n"] == record["protocol"]["n_eval"] == 36
    split = json.loads((result.run_dir / "split.json").read_text())
    assert split["split_sha256"] == record["protocol"]["split_sha256"] and len(split["train_ids"]) == 4
    assert record["matcher"]["fingerprint"]["name"] == "random"
    (session,) = record["provenance"]["sessions"]
    assert set(session) >= {"vlbench_version", "git_commit", "libraries", "device", "python", "data_root", "examples_scored"}
    assert session["libraries"]["torch"] and session["examples_scored"] == 36
    import torch

    assert re.fullmatch(rf"cpu \((.+, )?\S+ {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads?\)", session["device"]), session["device"]  # what decides float32 rounding
    assert record["timings"]["examples_scored"] == 36 and record["timings"]["pairs_per_second"] > 0


def test_a_device_other_than_cuda_or_the_cpu_is_named_as_itself():
    """Apple's `mps` is described with the processor it shares (here the meta device stands in)."""
    from vlbench.runtime import describe_device

    assert describe_device("meta").startswith("meta (") and describe_device("cpu").startswith("cpu (")


def test_the_recorded_commit_is_that_of_the_checkout_tracking_the_code_and_dirty_only_for_its_files(tmp_path):
    from vlbench.provenance import git_state

    def git(*arguments):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *arguments], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()

    for folder in ("plugin", "other", "venv/site-packages"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "code.py").write_text("x = 1\n")
    (tmp_path / ".gitignore").write_text("venv/\n")
    (tmp_path / "plugin" / "board.md").write_text("| a |\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    commit = git("rev-parse", "HEAD")
    assert git_state(tmp_path / "plugin") == (commit, False)
    (tmp_path / "plugin" / "board.md").write_text("| b |\n")
    assert git_state(tmp_path / "plugin", not_code=(".md",)) == (commit, False), "vlbench's regenerated board is not a change of its code"
    assert git_state(tmp_path / "plugin") == (commit, True), "a plugin's Markdown may be a prompt it reads"
    git("mv", "plugin/board.md", "plugin/board.py")
    assert git_state(tmp_path / "plugin", not_code=(".md",)) == (commit, True), "a rename counts by either name"
    git("mv", "plugin/board.py", "plugin/board.md")
    git("checkout", "--", "plugin/board.md")
    (tmp_path / "other" / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path / "plugin") == (commit, False), "another folder's change is not the plugin's"
    assert git_state(tmp_path) == (commit, True)
    assert git_state(tmp_path / "venv" / "site-packages") == (None, None), "an installed copy in an ignored folder has no commit"
    assert git_state(tmp_path.parent / "not-a-checkout") == (None, None)


def test_rerun_resumes_without_rescoring(tmp_path):
    log = tmp_path / "calls.log"
    options = {"matcher": "counting", "matcher_options": {"log": str(log)}, "task_options": {"n_examples": 12}}
    first = run_once(tmp_path, **options)
    assert len(log.read_text().splitlines()) == 12
    second = run_once(tmp_path, **options)
    assert len(log.read_text().splitlines()) == 12
    assert second.results["metrics"] == first.results["metrics"]
    assert second.results["timings"]["examples_resumed"] == 12
    # The invocation that scored keeps its timings in its session line; the one with nothing to do adds none.
    (session,) = second.results["provenance"]["sessions"]
    assert session["examples_scored"] == 12 and session["timings"]["score_seconds"] == first.results["timings"]["score_seconds"]


def test_example_lines_an_invocation_stopped_before_its_first_score_left_are_not_kept(tmp_path):
    """`examples.jsonl` is written before the scores: a stopped first invocation can leave lines
    and no scores, and the data may change before the next one, whose lines must be the ones read."""
    first = run_once(tmp_path)
    lines = (first.run_dir / "examples.jsonl").read_text().splitlines()
    stale = json.loads(lines[0])
    stale["images"][0]["key"] = "an image of other data"
    for name in os.listdir(first.run_dir):
        (first.run_dir / name).unlink()
    (first.run_dir / "examples.jsonl").write_text(json.dumps(stale) + "\n")
    again = run_once(tmp_path)
    assert (again.run_dir / "examples.jsonl").read_text().splitlines() == lines


def test_score_command_recomputes_metrics_from_records_alone(tmp_path):
    result = run_once(tmp_path, matcher="random", task_options={"n_examples": 25})
    path = result.run_dir / "results.json"
    tampered = json.loads(path.read_text())
    tampered["metrics"] = {"accuracy": -1}
    path.write_text(json.dumps(tampered))
    assert rescore(result.run_dir)["metrics"] == result.results["metrics"]
    (entry,) = json.loads(path.read_text())["rescored"]  # what it replaced, when, by which code
    assert entry["replaced"] == {"metrics": {"accuracy": -1}} and entry["vlbench_version"] and set(entry) == {"created", "vlbench_version", "git_commit", "git_dirty", "replaced"}
    rescore(result.run_dir)
    assert len(json.loads(path.read_text())["rescored"]) == 1, "a rescore that changes nothing leaves no entry"


def test_an_unfinished_run_is_named_by_the_board_and_the_score_command(tmp_path):
    run_once(tmp_path, matcher="random", task_options={"n_examples": 25})
    cut = run_once(tmp_path, matcher="random", seed=1, task_options={"n_examples": 25})
    (cut.run_dir / "results.json").unlink()  # as if stopped before its last example
    board = vlbench_cli("leaderboard", "runs", cwd=tmp_path)
    assert "| random | 0 | 1 |" in board.stdout
    assert board.stderr.strip() == f"not on the board: 1 unfinished run(s) (scores or training stored, no results.json), e.g. {cut.run_dir.relative_to(tmp_path)}; run their commands again to finish them"
    only_cut = vlbench_cli("leaderboard", str(cut.run_dir), cwd=tmp_path, check=False)
    assert only_cut.returncode == 2 and "1 unfinished run(s) there (scores or training stored, no results.json)" in only_cut.stderr
    refused = vlbench_cli("score", str(cut.run_dir), cwd=tmp_path, check=False)
    assert refused.returncode == 2 and f"{cut.run_dir} is an unfinished run (scores or training stored, no results); run its command again" in refused.stderr


@pytest.fixture
def mean_color():
    sys.path.insert(0, str(EXAMPLES))
    registry.matchers.register("mean-color", "vlbench_mean_color:MeanColorMatcher", origin="examples")
    yield
    registry.matchers.unregister("mean-color")
    sys.path.remove(str(EXAMPLES))


def test_training_through_the_shared_loop_beats_zero_shot_and_is_reused(tmp_path, mean_color, monkeypatch):
    zero_shot = run_once(tmp_path, matcher="mean-color", shots="0")
    trained = run_once(tmp_path, matcher="mean-color", shots="10%")
    # Untrained word colours are all zero: every pair ties, and ties are wrong.
    assert zero_shot.results["metrics"]["accuracy"] == 0.0
    # Measured: 89.5% on colour swaps, 66.1% overall (a linear model of the mean colour).
    assert trained.results["breakdown"]["neg_value"]["color"]["accuracy"] >= 0.8
    assert trained.results["metrics"]["accuracy"] >= 0.6
    assert trained.results["matcher"]["trained"] and (trained.run_dir / "state.pt").exists()

    from vlbench_mean_color import MeanColorMatcher

    def must_not_train(*args):
        raise AssertionError("a stored state must be loaded, not retrained")

    monkeypatch.setattr(MeanColorMatcher, "fit", must_not_train)
    (trained.run_dir / "results.json").unlink()
    (trained.run_dir / "scores.jsonl").unlink()
    again = run_once(tmp_path, matcher="mean-color", shots="10%")
    assert again.results["metrics"] == trained.results["metrics"]


@pytest.mark.parametrize("pixels_hashed", [False, True])
def test_the_loading_threads_hash_pixels_only_for_matchers_that_read_the_hash(pixels_hashed):
    import torch

    import vlbench
    from vlbench.evaluation import score_examples
    from vlbench.types import Matcher

    class Probe(Matcher):
        """Notes, per image it is given, whether its pixel hash was computed before scoring."""

        name = "probe"
        hashes_pixels = pixels_hashed

        def __init__(self):
            super().__init__(None, None)
            self.hashed = []

        def score(self, images, texts):
            self.hashed += ["content_hash" in vars(image) for image in images]
            return torch.zeros(len(images), len(texts))

    probe = Probe()
    examples = vlbench.create_task("colors", n_examples=6).examples(seed=0)
    score_examples(probe, examples, batch_size=2, append=lambda scored: None, workers=2)
    assert probe.hashed == [pixels_hashed] * 12
    assert registry.matchers.get("dsd").hashes_pixels and not registry.matchers.get("clip").hashes_pixels and not registry.matchers.get("random").hashes_pixels


def test_examples_showing_the_same_image_file_share_one_decode_while_it_is_recent(tmp_path, monkeypatch):
    from PIL import Image

    from vlbench.evaluation import RecentImages, prefetched
    from vlbench.types import Example, ImageRef

    decoded = []
    load = ImageRef.load
    monkeypatch.setattr(ImageRef, "load", lambda ref, data=None: decoded.append(ref.key) or load(ref, data))
    for name in "abc":
        Image.new("RGB", (16, 16), (80 * "abc".index(name), 0, 0)).save(tmp_path / f"{name}.png")
    file = lambda name: ImageRef(name, path=tmp_path / f"{name}.png")  # noqa: E731
    examples = [Example(str(i), (file("a"), file("bc"[i % 2])), ("a text",), ((0, 0),)) for i in range(6)]
    decode = lambda images: [image.pixels for image in images]  # noqa: E731
    loaded = [future.result() for _, future in prefetched(examples, workers=1, prepare=decode)]  # one thread: no two load at once
    assert decoded == ["a", "b", "c"]
    assert loaded[0][0] is loaded[5][0] and loaded[1][1] is loaded[3][1]
    decoded.clear()
    recent = RecentImages(budget=16 * 16 * 4)  # one image's pixels: a new image evicts the last
    assert [recent.load(file(name)).pixels.getpixel((0, 0))[0] for name in "aaba"] == [0, 0, 80, 0] and decoded == ["a", "b", "a"]
    assert recent.load(file("c")).key == "c" and decoded == ["a", "b", "a"]  # decoded on first use only
    rendered = ImageRef("r", render=lambda: Image.new("RGB", (16, 16)))  # a key alone may not name a rendering
    assert recent.load(rendered) is not recent.load(rendered)


def test_trainable_state_derives_from_the_one_trained_module(tmp_path, mean_color):
    import torch

    import vlbench
    from vlbench.evaluation import load_images
    from vlbench.training import TrainConfig

    matcher = vlbench.create_matcher("mean-color", device="cpu")
    assert matcher.trainable_parameters() == [matcher.trained["word_colors"]]
    before = matcher.state_dict()
    examples = vlbench.create_task("colors", n_examples=8).examples(seed=0)
    matcher.fit(examples, TrainConfig(epochs=1), load_images)
    after = matcher.state_dict()
    assert list(after) == ["word_colors"] and not torch.equal(after["word_colors"], before["word_colors"])
    fresh = vlbench.create_matcher("mean-color", device="cpu")
    fresh.load_state_dict(after)
    images = load_images(examples[0])
    assert torch.equal(fresh.score(images, examples[0].texts), matcher.score(images, examples[0].texts))


def test_sigkill_halfway_then_resume_matches_an_uninterrupted_run(tmp_path):
    # Every phase uses the same options (so the same run identity); the process stops at the gate
    # after 10 scoring calls, that is two whole batches of 5 appended, and is killed there.
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    gate.mkdir()
    (tmp_path / "run.yaml").write_text(json.dumps({"task_options": {"n_examples": 40}, "matcher_options": {"log": str(log), "gate": str(gate), "pause_after": 10}}))
    args = ["run", "--task", "colors", "--matcher", "counting", "--config", str(tmp_path / "run.yaml"), "--batch-size", "5"]
    environment = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen([sys.executable, str(TESTS / "launch.py"), *args, "--runs-dir", "killed"], cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_paused(gate, 1, [process])
    process.send_signal(signal.SIGKILL)
    process.wait()
    (scores,) = (tmp_path / "killed").rglob("scores.jsonl")
    stored_at_kill = {json.loads(line)["id"] for line in scores.read_text().splitlines() if line.endswith("}")}
    assert len(stored_at_kill) == 10
    calls_before = len(log.read_text().splitlines())
    open_gate(gate)

    vlbench_cli(*args, "--runs-dir", "killed", cwd=tmp_path)
    rescored = log.read_text().splitlines()[calls_before:]
    assert len(rescored) == 40 - len(stored_at_kill)
    # The counting matcher logs the first image key, "<index>-0", of example "colors-<index>".
    assert not {f"colors-{key.split('-')[0]}" for key in rescored} & stored_at_kill

    vlbench_cli(*args, "--runs-dir", "clean", cwd=tmp_path)
    killed = json.loads(scores.with_name("results.json").read_text())
    clean = json.loads(next((tmp_path / "clean").rglob("results.json")).read_text())
    assert killed["metrics"] == clean["metrics"] and killed["breakdown"] == clean["breakdown"]
    assert killed["n"] == 40
    (session,) = killed["provenance"]["sessions"]  # the killed invocation left none
    assert (session["examples_scored"], session["unrecorded"]) == (30, {"examples": 10})


def test_a_run_killed_after_its_last_score_gets_a_session_and_joins_the_board(tmp_path):
    from vlbench.leaderboard.publish import render_board

    for seed in (0, 1):
        run_once(tmp_path, seed=seed, task_options={"n_examples": 12})
    (killed,) = tmp_path.rglob("seed-1")
    for name in ("results.json", "sessions.jsonl"):  # as a kill between the last score and the session line leaves it
        (killed / name).unlink()
    resumed = run_once(tmp_path, seed=1, task_options={"n_examples": 12})
    (session,) = resumed.results["provenance"]["sessions"]
    assert (session["examples_scored"], session["unrecorded"], session["ended"]) == (0, {"examples": 12}, "completed")
    assert "| color-words | 0 | 2 |" in render_board([tmp_path / "runs"])
    again = run_once(tmp_path, seed=1, task_options={"n_examples": 12})
    assert again.results["provenance"]["sessions"] == resumed.results["provenance"]["sessions"]  # accounted for once


def test_lines_cut_off_mid_write_are_dropped_before_anything_is_appended_after_them(tmp_path):
    clean = run_once(tmp_path, "clean", task_options={"n_examples": 12})
    torn = run_once(tmp_path, task_options={"n_examples": 12})
    files = ("scores.jsonl", "examples.jsonl", "sessions.jsonl")
    for name in files:  # as a crash, a full disk or a power loss mid-write leaves them
        path = torn.run_dir / name
        path.write_bytes(path.read_bytes()[:-20])
    (torn.run_dir / "results.json").unlink()
    resumed = run_once(tmp_path, task_options={"n_examples": 12})
    assert resumed.results["timings"]["examples_scored"] == 1 and resumed.results["metrics"] == clean.results["metrics"]
    for name in files:
        lines = (torn.run_dir / name).read_text().splitlines()
        assert all(json.loads(line) for line in lines), name
    assert (torn.run_dir / "scores.jsonl").read_text() == (clean.run_dir / "scores.jsonl").read_text()


def test_a_board_whose_task_code_changed_without_a_version_bump_says_so_instead_of_suggesting_a_rescore(tmp_path, monkeypatch):
    from vlbench import provenance
    from vlbench.stored_runs import StoredRun
    from vlbench.tasks.colors import ColorsTask

    result = run_once(tmp_path, task_options={"n_examples": 12})
    today = {**provenance.source_files_sha256(), "vlbench.tasks/colors.py": "0" * 64}  # the task's file edited since
    monkeypatch.setattr(provenance, "source_files_sha256", lambda: today)
    monkeypatch.setattr(ColorsTask, "outcomes", lambda self, scores, positives: {"accuracy": 1.0})  # what the edit does
    with pytest.raises(VlbenchError, match=r"results.json records accuracy .* where its scores give 1 .*by today's code, which differs from the code that stored the run \(vlbench.tasks/colors.py differs\): if a change altered the task's outcomes, bump its version"):
        StoredRun(result.run_dir).check_metrics()
    from vlbench.rescore import rescore

    stored = (result.run_dir / "results.json").read_text()
    with pytest.raises(VlbenchError, match=r"today's code gives other numbers than the run records, and differs from the code that stored it \(vlbench.tasks/colors.py differs\)"):
        rescore(result.run_dir)  # it would write the edit's numbers under the stored code's name
    assert (result.run_dir / "results.json").read_text() == stored


def test_rerunning_a_finished_run_whose_scores_were_edited_is_refused(tmp_path):
    result = run_once(tmp_path, task_options={"n_examples": 12})
    scores = result.run_dir / "scores.jsonl"
    records = [json.loads(line) for line in scores.read_text().splitlines()]
    decided = next(record for record in records if record["scores"][0] != record["scores"][1])  # no tie: swapping its images flips it
    decided["scores"].reverse()
    scores.write_text("".join(json.dumps(record) + "\n" for record in records))
    with pytest.raises(VlbenchError, match=r"results.json records accuracy .* where its scores give .*: the run's files disagree"):
        run_once(tmp_path, task_options={"n_examples": 12})


def test_concurrent_runs_share_a_runs_directory_and_the_same_run_is_refused(tmp_path):
    # Both runs stop at the gate after 3 examples, so both hold their runs at once.
    gate = tmp_path / "gate"
    gate.mkdir()
    (tmp_path / "gated.yaml").write_text(json.dumps({"task_options": {"n_examples": 30}, "matcher_options": {"gate": str(gate), "pause_after": 3}}))
    command = [sys.executable, str(TESTS / "launch.py"), "run", "--task", "colors", "--matcher", "counting", "--config", "gated.yaml"]
    environment = {**os.environ, "COLUMNS": "200"}
    others = [subprocess.Popen([*command, "--seed", str(seed)], cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
    try:
        wait_until_paused(gate, 2, others)
        same = vlbench_cli("run", "--task", "colors", "--matcher", "counting", "--config", "gated.yaml", "--seed", "0", cwd=tmp_path, check=False)
    finally:
        open_gate(gate)
    assert same.returncode == 2 and same.stderr.strip().splitlines()[-1].startswith("error: another process is already running this run (runs/colors/counting/")
    assert [process.wait() for process in others] == [0, 0]
    for seed in (0, 1):
        (results,) = tmp_path.rglob(f"seed-{seed}/results.json")
        record = json.loads(results.read_text())
        lines = (results.parent / "scores.jsonl").read_text().splitlines()
        assert record["n"] == 30 and len(lines) == 30 and len({json.loads(line)["id"] for line in lines}) == 30


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_run_cleanly_and_the_same_command_resumes(tmp_path, stop):
    # The process waits at the gate after 10 scoring calls (two batches of 5 appended); the signal
    # arrives there.
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    gate.mkdir()
    (tmp_path / "run.yaml").write_text(json.dumps({"task_options": {"n_examples": 40}, "matcher_options": {"log": str(log), "gate": str(gate), "pause_after": 10}}))
    args = ["run", "--task", "colors", "--matcher", "counting", "--config", str(tmp_path / "run.yaml"), "--batch-size", "5"]
    environment = {**os.environ, "COLUMNS": "200"}
    # A shell's background job starts with SIGINT ignored, and Python then keeps ignoring it: the
    # process gets SIGINT's default action back, as a terminal's foreground job has it.
    process = subprocess.Popen(
        [sys.executable, str(TESTS / "launch.py"), *args],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_until_paused(gate, 1, [process])
    process.send_signal(stop)
    _, errors = process.communicate()
    assert process.returncode == 130 and errors.strip().splitlines()[-1] == "interrupted after 10 of 40 examples; run the same command to resume", errors
    assert "Traceback" not in errors
    open_gate(gate)
    resumed = vlbench_cli(*args, cwd=tmp_path)
    assert "resumed 10 stored examples, scored 30" in resumed.stdout
    assert len(log.read_text().splitlines()) == 40
    (results,) = tmp_path.rglob("results.json")
    sessions = json.loads(results.read_text())["provenance"]["sessions"]
    assert [(session["ended"], session["examples_scored"]) for session in sessions] == [("interrupted", 10), ("completed", 30)]


def test_an_invocation_that_fails_after_storing_scores_leaves_its_session_line(tmp_path):
    # Example colors-12 gets NaN scores, refused once two batches of 5 are stored.
    with pytest.raises(VlbenchError, match="colors-12"):
        run_once(tmp_path, matcher="counting", batch_size=5, task_options={"n_examples": 20}, matcher_options={"nan_key": "12-0"})
    (scores,) = tmp_path.rglob("scores.jsonl")
    (session,) = [json.loads(line) for line in scores.with_name("sessions.jsonl").read_text().splitlines()]
    assert len(scores.read_text().splitlines()) == session["examples_scored"] == 10
    assert session["ended"].startswith("failed: VlbenchError: ") and "colors-12" in session["ended"]
    assert not session["trained"] and "rank" not in session


def test_the_console_shows_how_many_evaluation_examples_the_split_dropped(tmp_path):
    from placeholders import comvg_root

    source = tmp_path / "source.csv"
    source.write_text("\n".join((TESTS / "data" / "real" / "comvg" / "compositional_visual_genome.csv").read_text().splitlines()[:41]) + "\n")
    comvg_root(tmp_path / "comvg", source)
    result = vlbench_cli("run", "--task", "comvg", "--matcher", "random", "--data-root", "comvg", "--shots", "4", cwd=tmp_path)
    record = json.loads(next(tmp_path.rglob("results.json")).read_text())
    dropped = record["protocol"]["dropped_for_shared_images"]
    assert dropped > 0 and f"{dropped} evaluation examples dropped for showing an image seen in training" in result.stdout.replace("\n", " ")


def test_the_results_path_is_one_unwrapped_line_on_a_narrow_terminal(tmp_path):
    """Scripts take the path from the last line (`vlbench run … | tail -1`), however narrow the console."""
    runs = tmp_path / "a-runs-directory-with-a-long-name-so-that-its-path-outgrows-forty-columns"
    result = vlbench_cli("run", "--task", "colors", "--matcher", "random", "--runs-dir", str(runs), cwd=tmp_path, env={"COLUMNS": "40"})
    last = result.stdout.strip().splitlines()[-1]
    assert last == f"results: {next(runs.rglob('results.json'))}", result.stdout


class ListScores(Matcher):
    name = "list-scores"
    summary = "Test matcher: scores as nested lists."

    def score(self, images, texts):
        return [[0.0 for _ in texts] for _ in images]


class OneShort(Matcher):
    name = "one-short"
    summary = "Test matcher: score_examples drops the last example."

    def score(self, images, texts):
        import torch

        return torch.zeros(len(images), len(texts))

    def score_examples(self, batch):
        return [self.score(images, texts) for images, texts in batch[:-1]]


@pytest.mark.parametrize(
    ("matcher", "problem"),
    [
        (ListScores, "matcher 'list-scores' returned a list of scores for example 'colors-0'; return a torch.Tensor [n_images, n_texts] = [2, 1]"),
        (OneShort, "matcher 'one-short' returned 3 score matrices from score_examples for 4 examples; return one per example, in their order"),
    ],
)
def test_scores_of_the_wrong_kind_are_refused_naming_the_matcher(tmp_path, monkeypatch, matcher, problem):
    registered(monkeypatch, matcher)
    with pytest.raises(VlbenchError, match=re.escape(problem)):
        run_once(tmp_path, matcher=matcher.name, batch_size=4, task_options={"n_examples": 8})


class FailsOnThirdCall(Matcher):
    name = "fails-on-third-call"
    summary = "Test matcher: raises from its third scoring call."
    calls = 0

    def score(self, images, texts):
        import torch

        type(self).calls += 1
        if type(self).calls == 3:
            raise RuntimeError("boom")
        return torch.zeros(len(images), len(texts))


def test_a_matcher_s_own_error_is_named_with_where_it_was_raised_and_the_run_resumes(tmp_path, monkeypatch):
    registered(monkeypatch, FailsOnThirdCall)
    monkeypatch.setattr(FailsOnThirdCall, "calls", 0)
    with pytest.raises(VlbenchError, match=r"^scoring failed: RuntimeError: boom \(raised at test_run.py:\d+, in score\); what the run stored is kept: the same command resumes once the cause is fixed \(--debug shows the traceback\)$"):
        run_once(tmp_path, matcher="fails-on-third-call", batch_size=2, task_options={"n_examples": 8})
    assert run_once(tmp_path, matcher="fails-on-third-call", batch_size=2, task_options={"n_examples": 8}).results["timings"]["examples_resumed"] == 2  # the first batch of two


def test_a_stored_trained_state_that_no_longer_fits_the_matcher_is_refused_with_the_remedy(tmp_path, monkeypatch):
    registered(monkeypatch, LengthHead)
    options = {"matcher": "length-head", "shots": "25%", "train": {"epochs": 1}, "limit": 4, "task_options": {"n_examples": 40}}
    run_once(tmp_path, **options)
    monkeypatch.setattr(LengthHead, "width", 2)  # the code changed, its version did not
    with pytest.raises(VlbenchError, match=r"state.pt: the stored trained state does not fit matcher 'length-head' \(Error\(s\) in loading state_dict for Linear: size mismatch for weight: .*\): other code of the same version stored it; bump the matcher's version"):
        run_once(tmp_path, **options)


def test_a_trained_state_other_than_the_one_training_stored_is_refused(tmp_path, monkeypatch):
    import torch

    registered(monkeypatch, LengthHead)
    options = {"matcher": "length-head", "shots": "25%", "train": {"epochs": 1}, "limit": 4, "task_options": {"n_examples": 40}}
    first = run_once(tmp_path, **options)
    (first.run_dir / "results.json").unlink()
    (first.run_dir / "scores.jsonl").write_text(score_lines(first)[0] + "\n")  # as if stopped after one example
    stored = (first.run_dir / "state.pt").read_bytes()
    state = torch.load(first.run_dir / "state.pt", weights_only=True)
    torch.save({name: -value for name, value in state.items()}, first.run_dir / "state.pt")
    with pytest.raises(VlbenchError, match=r"state.pt is not the trained state this run stored \(sha256 [0-9a-f]{12}… → [0-9a-f]{12}…\): edited, copied from another run, or stored by an older vlbench; --restart to train again"):
        run_once(tmp_path, **options)
    (first.run_dir / "state.pt").write_bytes(stored)
    assert run_once(tmp_path, **options).results["metrics"] == first.results["metrics"]
    other = run_once(tmp_path, seed=1, **options)  # another seed's state, copied with its hash
    (first.run_dir / "results.json").unlink()
    for name in ("state.pt", "state.sha256"):
        (first.run_dir / name).write_bytes((other.run_dir / name).read_bytes())
    with pytest.raises(VlbenchError, match=r"state.pt is not the trained state this run stored \(stored for another run or split\)"):
        run_once(tmp_path, **options)
    (first.run_dir / "state.sha256").unlink()
    with pytest.raises(VlbenchError, match=r"state.pt is not the trained state this run stored \(its sha256 is not recorded\)"):
        run_once(tmp_path, **options)


def test_scores_of_another_run_s_examples_are_refused_on_resume_and_on_a_board(tmp_path):
    options = {"matcher": "random", "shots": "25%", "task_options": {"n_examples": 40}}
    runs = [run_once(tmp_path, seed=seed, **options) for seed in (0, 1)]
    mine, theirs = (result.run_dir / "scores.jsonl" for result in runs)
    swapped = theirs.read_text()
    theirs.write_text(mine.read_text())
    mine.write_text(swapped)
    board = vlbench_cli("leaderboard", str(tmp_path / "runs"), cwd=tmp_path, check=False)
    assert board.returncode == 2 and re.search(r"scores.jsonl holds scores of \d+ examples outside this run's evaluation examples \(first: '[^']+'\): the files of two runs mixed; re-run it with --restart", board.stderr), board.stderr
    (runs[0].run_dir / "results.json").unlink()
    with pytest.raises(VlbenchError, match=r"scores.jsonl holds scores of \d+ examples that are not among this run's evaluation examples \(first: '[^']+'\): scores of another run mixed in; use another --runs-dir, or --restart"):
        run_once(tmp_path, seed=0, **options)


@pytest.mark.parametrize(
    "edit, refusal",
    [
        (lambda record: record["protocol"].update(seed=3), 'records protocol.seed 3 where config.yaml\'s seed is 0'),
        (lambda record: record["protocol"].update(n_eval=5400), 'records protocol.n_eval 5400 where split.json\'s n_eval is 30'),
        (lambda record: record["protocol"].update(shots="10%"), 'records protocol.shots "10%" where identity.json\'s shots is "25%"'),
        (lambda record: record["matcher"]["fingerprint"].update(options={"lr": 0.1}), 'records matcher.fingerprint.options {"lr": 0.1} where identity.json\'s matcher_options is {}'),
        (lambda record: record.update(config_id="0123456789"), 'records config_id "0123456789" where identity.json\'s config_id is "'),
        (lambda record: record["code"].update(sources_sha256="0" * 64), 'records code.sources_sha256 "' + "0" * 64 + '" where the hash of identity.json\'s source files is "'),
        (lambda record: record["task"].update(data_fingerprint="image-bytes:0"), 'records task.data_fingerprint "0" where identity.json\'s data fingerprint is "'),
    ],
)
def test_a_results_record_that_disagrees_with_the_run_s_other_files_is_refused_by_boards(tmp_path, edit, refusal):
    result = run_once(tmp_path, matcher="random", shots="25%", task_options={"n_examples": 40})
    record = json.loads((result.run_dir / "results.json").read_text())
    edit(record)
    (result.run_dir / "results.json").write_text(json.dumps(record))
    board = vlbench_cli("leaderboard", str(tmp_path / "runs"), cwd=tmp_path, check=False)
    assert board.returncode == 2 and f"results.json {refusal}" in board.stderr and "the run's files disagree (mixed from two runs, or edited)" in board.stderr, board.stderr


def test_python_m_vlbench_runs_beside_a_folder_named_vlbench(tmp_path):
    # `python -m` puts the working directory first on sys.path, where this folder shadows the
    # package (the parent of a checkout, for one): `import vlbench` is then a namespace package.
    from vlbench.version import __version__

    (tmp_path / "vlbench").mkdir()
    done = subprocess.run([sys.executable, "-m", "vlbench", "run", "--task", "colors", "--matcher", "random"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (results,) = tmp_path.rglob("results.json")
    assert json.loads(results.read_text())["provenance"]["sessions"][0]["vlbench_version"] == __version__

