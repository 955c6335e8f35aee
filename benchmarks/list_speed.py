"""`vlbench list matchers` against `vlbench --help`, each in fresh processes, interleaved, medians.

    python benchmarks/list_speed.py [--repeats 5]

Listing reads each entry's summary from its source, so it should cost about what starting the CLI
costs and stay under a second; the script exits 1 if the median is a second or more.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vlbench", *args], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    listing, help_ = [], []
    for _ in range(args.repeats):
        listing.append(timed(["list", "matchers"]))
        help_.append(timed(["--help"]))
    list_median, help_median = statistics.median(listing), statistics.median(help_)
    print(f"vlbench list matchers: median {list_median:.3f} s (min {min(listing):.3f}, max {max(listing):.3f})")
    print(f"vlbench --help:        median {help_median:.3f} s (min {min(help_):.3f}, max {max(help_):.3f})")
    print(f"ratio list/help: {list_median / help_median:.2f}")
    if list_median >= 1.0:
        sys.exit(1)


if __name__ == "__main__":
    main()
