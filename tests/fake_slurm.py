"""A stand-in for Slurm's `sbatch`, `srun` and `sacct`, enough for submitit's job arrays: `sbatch`
keeps the submission script and starts its array tasks (one after another, with the environment
Slurm gives a task); each ended task's state is recorded, and `sacct` reports it.

Usage: `fake_slurm.py sbatch|srun|sacct ARGS`, state under $FAKE_SLURM_DIR.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ.get("FAKE_SLURM_DIR", "."))


def sbatch(script: str) -> None:
    """Keep the script, start its tasks in the background (submitit moves their inputs in place
    once sbatch has answered) and answer with the job id."""
    text = Path(script).read_text()
    array = re.search(r"^#SBATCH --array=0-(\d+)", text, flags=re.MULTILINE)
    job_id = str(4200 + len(list(STATE.glob("submitted-*.sh"))))
    kept = STATE / f"submitted-{job_id}.sh"
    kept.write_text(text)
    tasks = str(int(array.group(1)) + 1) if array else ""
    subprocess.Popen([sys.executable, __file__, "run", str(kept), job_id, tasks], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"Submitted batch job {job_id}")


def run(script: str, job_id: str, tasks: str) -> None:
    """Every task of the job, one after another, with the environment Slurm gives a task."""
    for task in range(int(tasks or 1)):
        environment = {
            **os.environ, "SLURM_JOB_ID": f"{job_id}{task:03d}", "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0",
            "SLURM_JOB_NODELIST": "localhost", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
            **({"SLURM_ARRAY_JOB_ID": job_id, "SLURM_ARRAY_TASK_ID": str(task)} if tasks else {}),
        }
        done = subprocess.run(["bash", script], env=environment)
        name = f"{job_id}_{task}" if tasks else job_id
        with open(STATE / "states", "a") as states:
            states.write(f"{name}|{'COMPLETED' if done.returncode == 0 else 'FAILED'}|localhost\n")


def srun(arguments: list[str]) -> None:
    """Run the command after srun's options, with `--output`/`--error` patterns filled in."""
    fill = {"%A": os.environ.get("SLURM_ARRAY_JOB_ID", ""), "%a": os.environ.get("SLURM_ARRAY_TASK_ID", ""), "%j": os.environ["SLURM_JOB_ID"], "%t": "0"}
    files = {}
    while arguments[0].startswith("--"):
        option = arguments.pop(0)
        if option in ("--output", "--error"):
            path = arguments.pop(0)
            for pattern, value in fill.items():
                path = path.replace(pattern, value)
            files[option] = open(path, "w")
    done = subprocess.run(arguments, stdout=files.get("--output"), stderr=files.get("--error"))
    sys.exit(done.returncode)


def sacct() -> None:
    print("JobID|State|NodeList")
    states = STATE / "states"
    print(states.read_text() if states.exists() else "", end="")


if __name__ == "__main__":
    command, arguments = sys.argv[1], sys.argv[2:]
    if command == "sbatch":
        sbatch(arguments[-1])
    elif command == "run":
        run(*arguments)
    elif command == "srun":
        srun(arguments)
    else:
        sacct()
