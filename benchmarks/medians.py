"""Printing timings of paths that were run alternately: medians, ranges and ratios."""

from __future__ import annotations

import statistics


def print_rates(times: dict[str, list[float]], amount: int, unit: str, baseline: str) -> None:
    """Per path, `amount` over its median seconds (and over its slowest and fastest repeat), and the
    ratio of `baseline`'s median seconds to its own."""
    reference = statistics.median(times[baseline])
    width = max(len(name) for name in times)
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{name:{width}s} {amount / median:8.1f} {unit} (median; range {amount / max(seconds):.1f}–{amount / min(seconds):.1f})   ratio to the {baseline} {reference / median:.2f}x")
