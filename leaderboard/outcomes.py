"""Per-example outcomes of two rows of runs, paired by example id for the paired bootstrap."""

from __future__ import annotations

from collections.abc import Sequence

from vlbench.stored_runs import StoredRun


def compared_metric(runs: Sequence[StoredRun]) -> str:
    """The per-example metric a comparison uses: the task's headline where it is one (Winoground's
    `group`), else the first outcome (ComVG's `accuracy`: its `average` is not per example)."""
    outcomes = next(iter(runs[0].outcomes.values()))
    headline = runs[0].record.headline
    return headline if headline in outcomes else next(iter(outcomes))


def paired_outcomes(runs: Sequence[StoredRun], baseline_runs: Sequence[StoredRun], same_seeds: bool = True) -> tuple[str, list[float], list[float]]:
    """(metric, outcomes, baseline outcomes), one pair per example both rows scored.

    With `same_seeds` (rows of the same shots, hence the same splits per seed), an example pairs
    within each seed both ran and each side is averaged over those seeds; otherwise (a trained row
    against a zero-shot one) each side is averaged over its own seeds that scored the example. So
    an example scored under three seeds counts once."""
    metric = compared_metric(runs)
    ours: dict[str, list[float]] = {}
    theirs: dict[str, list[float]] = {}
    if same_seeds:
        baseline_by_seed = {run.record.seed: run for run in baseline_runs}
        for run in runs:
            other = baseline_by_seed.get(run.record.seed)
            if other is None:
                continue
            for example_id in run.outcomes.keys() & other.outcomes.keys():
                ours.setdefault(example_id, []).append(run.outcomes[example_id][metric])
                theirs.setdefault(example_id, []).append(other.outcomes[example_id][metric])
    else:
        for side, group in ((ours, runs), (theirs, baseline_runs)):
            for run in group:
                for example_id, outcome in run.outcomes.items():
                    side.setdefault(example_id, []).append(outcome[metric])
    shared = sorted(ours.keys() & theirs.keys())
    return metric, [sum(ours[i]) / len(ours[i]) for i in shared], [sum(theirs[i]) / len(theirs[i]) for i in shared]
