"""Hashing a dataset's image files for a run's identity: the first run reads every file, later ones
stat them. Each measure runs in a fresh process, interleaved with its floor, medians.

    python benchmarks/image_hashing.py [--files 2000] [--kib 160] [--repeats 5]

`vlbench.hashing.many_files_sha256` with an empty hash cache against a loop that reads and hashes
each file (the files are in the page cache, as just written); with the cache filled against a loop
that only stats each file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medians import print_rates

from vlbench import hashing

MEASURE = r"""
import hashlib, os, sys, time
from pathlib import Path
paths = sorted(Path(sys.argv[2]).iterdir())
started = time.perf_counter()
if sys.argv[1] == "vlbench":
    from vlbench.hashing import many_files_sha256
    started = time.perf_counter()
    hashes = many_files_sha256(paths)
    assert all(hashes.values())
elif sys.argv[1] == "read":
    for path in paths:
        hashlib.sha256(path.read_bytes()).hexdigest()
else:
    for path in paths:
        os.stat(path)
print(time.perf_counter() - started)
"""


def timed(how: str, images: Path, cache: Path) -> float:
    """Seconds the measured part took in a fresh process (imports not counted)."""
    result = subprocess.run([sys.executable, "-c", MEASURE, how, str(images)], env={**os.environ, "VLBENCH_CACHE": str(cache)}, check=True, capture_output=True, text=True)
    return float(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--kib", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        images = Path(directory) / "images"
        images.mkdir()
        for index in range(args.files):
            (images / f"{index:06d}.jpg").write_bytes(os.urandom(args.kib * 1024))
        time.sleep(hashing.SETTLED_NS / 1e9 + 0.5)  # a file changed within that is hashed again next time
        first = {"vlbench, empty hash cache": [], "read and sha256 each file": []}
        later = {"vlbench, hashes cached": [], "stat each file": []}
        for repeat in range(args.repeats):
            cache = Path(directory) / f"cache-{repeat}"
            first["vlbench, empty hash cache"].append(timed("vlbench", images, cache))
            first["read and sha256 each file"].append(timed("read", images, cache))
            later["vlbench, hashes cached"].append(timed("vlbench", images, cache))
            later["stat each file"].append(timed("stat", images, cache))
        print(f"{args.files} files of {args.kib} KiB, {args.repeats} repeats")
        print_rates(first, args.files, "files/s", "read and sha256 each file")
        print_rates(later, args.files, "files/s", "stat each file")


if __name__ == "__main__":
    main()
