"""Per-example outcomes of two rows of runs, paired by example id for the paired comparison."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vlbench.errors import VlbenchError
from vlbench.leaderboard.paired import grouped_mean
from vlbench.stored_runs import StoredRun


class UnrecordedExample(VlbenchError):
    """A run's `scores.jsonl` holds an example whose images its `examples.jsonl` does not name
    (vlbench writes the example's line first: a run edited or copied in part)."""


@dataclass(frozen=True)
class PairedOutcomes:
    metric: str
    ours: list[float]  # per example both rows scored, averaged over the seeds that paired it
    theirs: list[float]  # the baseline's, aligned with `ours`
    groups: list[str] | None  # each example's value of the task's `headline_groups` tag, which the metric averages over
    clusters: list[str]  # each example's cluster (`matching_image_clusters`), aligned with `ours`
    by_seed: dict[int, float | None]  # each seed of the row: the metric's difference over the examples it paired (None: not paired)
    against_mean: list[int]  # seeds paired with the baseline's mean over its seeds, which lack them


def compared_metric(runs: Sequence[StoredRun]) -> tuple[str, str, str | None]:
    """The metric a comparison tests, the per-example outcome it is computed from, and the tag
    whose groups it averages: the task's headline where it is per example (Winoground's `group`)
    or a mean over `headline_groups` (ComVG's `average` of `accuracy` over `neg_value`), else the
    first outcome."""
    outcomes = next(iter(runs[0].outcomes.values()))
    headline, groups, first = runs[0].record.headline, runs[0].task.headline_groups, next(iter(outcomes))
    if headline in outcomes:
        return headline, headline, None
    return (headline, first, groups) if groups else (first, first, None)


def paired_outcomes(runs: Sequence[StoredRun], baseline_runs: Sequence[StoredRun], same_shots: bool = True) -> PairedOutcomes:
    """One pair per example both rows scored, and each seed's mean difference.

    Each seed of the row pairs with the baseline's run of the same seed (the same split, the same
    noise or initialisation); a seed the baseline did not run pairs, against a zero-shot baseline
    (`same_shots` false), with the baseline's mean over its seeds that scored the example where
    the task's examples do not vary by seed (RefCOCOg's and official VQAv2's candidates are drawn per seed:
    an id is another example under another seed), and with nothing otherwise. Each side is then averaged over the seeds
    that paired the example, so an example scored under three seeds counts once; resampling
    examples does not see how much the seed moves the row, which `by_seed` shows."""
    metric, outcome_name, group_tag = compared_metric(runs)
    baseline_by_seed = {run.record.seed: {i: outcome[outcome_name] for i, outcome in run.outcomes.items()} for run in baseline_runs}
    pooled: dict[str, list[float]] = {}
    for outcomes in baseline_by_seed.values():
        for example_id, value in outcomes.items():
            pooled.setdefault(example_id, []).append(value)
    baseline_mean = {example_id: sum(values) / len(values) for example_id, values in pooled.items()}
    ours: dict[str, list[float]] = {}
    theirs: dict[str, list[float]] = {}
    group_of: dict[str, str] = {}
    by_seed: dict[int, float | None] = {}
    against_mean = []
    for run in sorted(runs, key=lambda run: run.record.seed):
        seed = run.record.seed
        partner = baseline_by_seed.get(seed)
        if partner is None and not same_shots and not run.task.examples_vary_by_seed:
            partner = baseline_mean  # the same examples under every seed
            against_mean.append(seed)
        shared = sorted(run.outcomes.keys() & partner.keys()) if partner is not None else []
        for example_id in shared:
            ours.setdefault(example_id, []).append(run.outcomes[example_id][outcome_name])
            theirs.setdefault(example_id, []).append(partner[example_id])
            if group_tag:
                group_of[example_id] = run.scores[example_id].tags.get(group_tag, "")
        by_seed[seed] = grouped_mean([run.outcomes[i][outcome_name] - partner[i] for i in shared], [group_of[i] for i in shared] if group_tag else None) if shared else None
    paired = sorted(ours)
    groups = [group_of[i] for i in paired] if group_tag else None
    cluster_of = matching_image_clusters([*runs, *baseline_runs])
    return PairedOutcomes(metric, [sum(ours[i]) / len(ours[i]) for i in paired], [sum(theirs[i]) / len(theirs[i]) for i in paired], groups, [cluster_of[i] for i in paired], by_seed, against_mean)


def matching_image_clusters(runs: Sequence[StoredRun]) -> dict[str, str]:
    """Each example id the runs scored, labelled by its cluster: examples that show one picture in
    a matching pair (by the key `examples.jsonl` records: a picture, or for a crop, as RefCOCOg's
    `view: crop` makes, the picture it is cut from) are linked, in any run, and a cluster is what
    the links join. Their outcomes are not
    independent: a matcher that misreads a picture misreads it in each of its questions."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def root(node: tuple[str, str]) -> tuple[str, str]:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for run in runs:
        shown = run.files.read_lines("examples")
        for example_id, scored in run.scores.items():
            if example_id not in shown:
                raise UnrecordedExample(f"{run.directory} scored example '{example_id}' but its examples.jsonl, which names the images the comparison clusters examples by, lacks it")
            images = shown[example_id].get("images", [])
            for image in {image for image, _ in scored.positives}:
                if image >= len(images) or "key" not in images[image]:
                    raise UnrecordedExample(f"{run.directory}: the examples.jsonl line of example '{example_id}' names no key for its image {image}, which the comparison clusters examples by")
                parent[root(("example", example_id))] = root(("image", images[image].get("picture") or images[image]["key"]))
            root(("example", example_id))
    return {node[1]: "\0".join(root(node)) for node in list(parent) if node[0] == "example"}

