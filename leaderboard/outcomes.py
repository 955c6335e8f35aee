"""Per-example outcomes of two rows of runs, paired by example id for the paired bootstrap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vlbench.stored_runs import StoredRun


@dataclass(frozen=True)
class PairedOutcomes:
    metric: str
    ours: list[float]  # per example both rows scored, averaged over the seeds that paired it
    theirs: list[float]  # the baseline's, aligned with `ours`
    by_seed: dict[int, float]  # each seed of the row: its mean difference over the examples it paired


def compared_metric(runs: Sequence[StoredRun]) -> str:
    """The per-example metric a comparison uses: the task's headline where it is one (Winoground's
    `group`), else the first outcome (ComVG's `accuracy`: its `average` is not per example)."""
    outcomes = next(iter(runs[0].outcomes.values()))
    headline = runs[0].record.headline
    return headline if headline in outcomes else next(iter(outcomes))


def paired_outcomes(runs: Sequence[StoredRun], baseline_runs: Sequence[StoredRun], same_seeds: bool = True) -> PairedOutcomes:
    """One pair per example both rows scored, and each seed's mean difference.

    With `same_seeds` an example pairs within each seed both ran (the same split, the same noise
    or initialisation) and each side is averaged over those seeds; otherwise each side is averaged
    over its own seeds that scored the example. So an example scored under three seeds counts
    once, and resampling examples does not see how much the seed moves the row: `by_seed` shows it."""
    metric = compared_metric(runs)
    ours: dict[str, list[float]] = {}
    theirs: dict[str, list[float]] = {}
    by_seed: dict[int, float] = {}
    if same_seeds:
        baseline_by_seed = {run.record.seed: run for run in baseline_runs}
        for run in runs:
            other = baseline_by_seed.get(run.record.seed)
            if other is None:
                continue
            shared = sorted(run.outcomes.keys() & other.outcomes.keys())
            for example_id in shared:
                ours.setdefault(example_id, []).append(run.outcomes[example_id][metric])
                theirs.setdefault(example_id, []).append(other.outcomes[example_id][metric])
            if shared:
                by_seed[run.record.seed] = sum(run.outcomes[i][metric] - other.outcomes[i][metric] for i in shared) / len(shared)
    else:
        for side, group in ((ours, runs), (theirs, baseline_runs)):
            for run in group:
                for example_id, outcome in run.outcomes.items():
                    side.setdefault(example_id, []).append(outcome[metric])
        for run in runs:
            shared = sorted(run.outcomes.keys() & theirs.keys())
            if shared:
                by_seed[run.record.seed] = sum(run.outcomes[i][metric] - sum(theirs[i]) / len(theirs[i]) for i in shared) / len(shared)
    shared = sorted(ours.keys() & theirs.keys())
    return PairedOutcomes(metric, [sum(ours[i]) / len(ours[i]) for i in shared], [sum(theirs[i]) / len(theirs[i]) for i in shared], dict(sorted(by_seed.items())))
