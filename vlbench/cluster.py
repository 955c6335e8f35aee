"""A suite's runs on a cluster through submitit: one job array, one run per array task, each a
`vlbench run --config` process (under torchrun when a task has several GPUs).

`slurm` submits with `sbatch` from a login node; `submitit-local` sends the same array through
submitit's local executor (processes on this machine), a rehearsal of the Slurm path.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vlbench.errors import VlbenchError

Cluster = Literal["slurm", "submitit-local"]


@dataclass(frozen=True)
class ClusterOptions:
    cluster: Cluster = "slurm"
    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int | None = None
    mem_gb: int | None = None
    timeout_min: int = 24 * 60
    array_parallelism: int = 64  # array tasks running at once
    poll_seconds: float = 30.0  # how often to ask whether tasks ended

    def parameters(self) -> dict[str, object]:
        """submitit's `update_parameters` keywords."""
        values: dict[str, object] = {"name": "vlbench-suite", "timeout_min": self.timeout_min, "tasks_per_node": 1}
        if self.cluster == "slurm":
            values |= {"gpus_per_node": self.gpus_per_job, "slurm_array_parallelism": self.array_parallelism}
            values |= {key: value for key, value in (("slurm_partition", self.partition), ("cpus_per_task", self.cpus_per_job), ("mem_gb", self.mem_gb)) if value is not None}
        return values


# `vlbench` in a child process, without the working directory on sys.path (as `-m` would put it):
# a folder named vlbench there, such as a checkout seen from its parent, would shadow the package.
_CHILD = "import sys; sys.path[:1] = [entry for entry in sys.path[:1] if entry]; from vlbench.cli.app import main; main()"


def vlbench_command(*arguments: str) -> list[str]:
    """`vlbench ARGUMENTS` as a process of this Python, importing the vlbench installed there."""
    return [sys.executable, "-c", _CHILD, *arguments]


def run_command(config_file: Path, gpus: int) -> list[str]:
    """The command an array task runs: `vlbench run`, under torchrun with one process per GPU."""
    run = vlbench_command("run", "--config", str(config_file))
    if gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(gpus), "--no-python", *run]
    return run


def run_array(config_files: list[Path], options: ClusterOptions, folder: Path, submitted: Callable[[list[str]], None], ended: Callable[[int, str | None], None]) -> None:
    """Submit one array task per configuration file (`submitted(job ids)` once they are queued)
    and wait for all of them; `ended(i, error)` is called as task i ends (`error`: None, or the
    first line of what stopped it)."""
    try:
        import submitit
    except ImportError:
        raise VlbenchError("--executor slurm needs submitit: pip install 'vlbench[slurm]'") from None
    if options.cluster == "slurm" and shutil.which("sbatch") is None:
        raise VlbenchError("--executor slurm: sbatch is not on PATH; run the suite from a Slurm login node (or use --executor local)")
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm" if options.cluster == "slurm" else "local")
    executor.update_parameters(**options.parameters())
    with executor.batch():
        handles = [executor.submit(submitit.helpers.CommandFunction(run_command(path, options.gpus_per_job), verbose=False)) for path in config_files]
    submitted([handle.job_id for handle in handles])
    index = {handle.job_id: i for i, handle in enumerate(handles)}
    for handle in submitit.helpers.as_completed(handles, poll_frequency=options.poll_seconds):
        try:
            handle.result()
            error = None
        except Exception as failure:  # submitit raises its own error types, carrying the task's stderr
            error = first_error_line(str(failure)) or f"array task {handle.job_id} failed; see {folder}"
        ended(index[handle.job_id], error)


def first_error_line(text: str) -> str | None:
    """The last `error: ...` line vlbench printed in a failed task's output (submitit may prefix
    it with its exception's name), if any."""
    errors = re.findall(r"^(?:.*Error: )?(error: .*)$", text, flags=re.MULTILINE)
    return errors[-1].strip() if errors else None
