import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
# Generated data (the mini-world, ~90 MB) goes to a cache of this session, never the user's home, and
# subprocesses' temporary files (torchrun's log folders) to a folder of it; both inherit it through the
# environment, and the session removes it when it ends.
SESSION_FILES = Path(tempfile.mkdtemp(prefix="vlbench-tests-"))
atexit.register(shutil.rmtree, SESSION_FILES, ignore_errors=True)
os.environ["VLBENCH_CACHE"] = str(SESSION_FILES / "cache")
(SESSION_FILES / "tmp").mkdir()
os.environ["TMPDIR"] = str(SESSION_FILES / "tmp")


def _stop_as_ctrl_c(signum, frame):
    """SIGTERM (a CI time limit, `timeout`, a scheduler) stops the session as Ctrl-C does, so its
    teardown and the removal of SESSION_FILES run; by default it would end the process at once."""
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _stop_as_ctrl_c)

import support  # noqa: E402

from vlbench import registry  # noqa: E402


@pytest.fixture(autouse=True)
def test_components():
    """The test-only task and matcher, registered like any other entry."""
    support.register_all()
    yield
    registry.matchers.unregister("counting")
    registry.tasks.unregister("tiny-files")


def vlbench_cli(*args: str, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `vlbench ARGS` in a fresh process, with the test components registered."""
    environment = {**os.environ, "COLUMNS": "200", **(env or {})}
    environment.pop("VLBENCH_DEBUG", None)
    result = subprocess.run([sys.executable, str(TESTS / "launch.py"), *args], cwd=cwd, env=environment, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"vlbench {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def offline(monkeypatch):
    """As on a machine without internet: hub lookups must not be attempted."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def settled(monkeypatch):
    """Files the test writes count as written long before they are hashed, so their hashes are
    cached (`hashing.SETTLED_NS`)."""
    from vlbench import hashing

    now_ns = hashing.now_ns
    monkeypatch.setattr(hashing, "now_ns", lambda: now_ns() + 3600 * 10**9)


def mini_results(tmp_path: Path, task: str, matcher: str, model: str, world_seed: int, **values) -> dict:
    """`results.json` of a run (zero-shot unless `shots` is given) on the mini-world `world_seed`."""
    from vlbench.config import load_run_config
    from vlbench.runner import prepare, run

    config = load_run_config(None, {"task": task, "matcher": matcher, "model": model, "runs_dir": str(tmp_path / "runs"), "task_options": {"world_seed": world_seed}, **values})
    return run(prepare(config), 0).results


def mini_comvg_accuracy(tmp_path: Path, matcher: str, model: str, world_seed: int, matcher_options: dict | None = None) -> dict[str, float]:
    """Accuracy per swap kind (subject, object, verb) of a zero-shot run on a mini ComVG world."""
    results = mini_results(tmp_path, "mini-comvg", matcher, model, world_seed, matcher_options=matcher_options or {})
    return {value: group["accuracy"] for value, group in results["breakdown"]["neg_value"].items()}


@pytest.fixture
def vlbench_here(capsys, monkeypatch):
    """`vlbench ARGS` in this process: (exit code, stdout, stderr)."""
    from vlbench.cli.app import main

    def call(*args, cwd):
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["vlbench", *args])
        handler = signal.getsignal(signal.SIGTERM)
        try:
            main()
            code = 0
        except SystemExit as stop:
            code = stop.code or 0
        finally:
            signal.signal(signal.SIGTERM, handler)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call
