"""The test session itself: what it leaves behind."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import TESTS
from support import open_gate, wait_until_paused


def test_a_session_stopped_by_sigterm_removes_its_files(tmp_path):
    """A session paused inside a test gets SIGTERM: it stops as on Ctrl-C and removes its files
    (the generated mini-world among them) rather than leaving them in the temporary folder."""
    gate = tmp_path / "gate"
    gate.mkdir()
    (tmp_path / "test_paused.py").write_text(
        "import os\nfrom pathlib import Path\nfrom support import wait_at_gate\n\n\n"
        "def test_paused():\n"
        f"    Path({str(tmp_path / 'cache')!r}).write_text(os.environ['VLBENCH_CACHE'])\n"
        f"    wait_at_gate(Path({str(gate)!r}))\n"
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest", "test_paused.py"]
    process = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(TESTS)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_paused(gate, 1, [process])
        session = Path((tmp_path / "cache").read_text()).parent
        assert session.is_dir() and session != Path(os.environ["VLBENCH_CACHE"]).parent
        process.send_signal(signal.SIGTERM)
        output = process.communicate()[0]
    finally:
        open_gate(gate)  # a session that did not stop goes on, and ends
        process.wait()
    assert process.returncode == 2 and "KeyboardInterrupt" in output and not session.exists(), output
