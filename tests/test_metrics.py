import pytest

from vlbench.metrics import aggregate, image_choice_correct, text_rank, text_top_k, winoground_outcomes


def test_image_choice_is_strict():
    assert image_choice_correct([[0.9], [0.1]], image=0, text=0) == 1.0
    assert image_choice_correct([[0.9], [0.1]], image=1, text=0) == 0.0
    assert image_choice_correct([[0.5], [0.5]], image=0, text=0) == 0.0  # a tie is wrong
    assert image_choice_correct([[0.2], [0.7], [0.7]], image=1, text=0) == 0.0
    assert image_choice_correct([[0.2], [0.7], [0.6]], image=1, text=0) == 1.0


def test_text_rank_counts_ties_against_the_target():
    row = [[0.3, 0.9, 0.3, 0.1, 0.3]]
    assert text_rank(row, 0, 1) == 1
    assert text_rank(row, 0, 0) == 4  # ties with texts 2 and 4, and text 1 is higher
    assert text_rank(row, 0, 3) == 5
    assert text_top_k(row, 0, 0, ks=(1, 3, 4)) == {"top1": 0.0, "top3": 0.0, "top4": 1.0}


def test_top_k_over_ten_candidates():
    scores = [[float(value) for value in (5, 9, 1, 2, 3, 4, 6, 7, 8, 0)]]
    assert text_top_k(scores, 0, 0, ks=(1, 5)) == {"top1": 0.0, "top5": 1.0}  # rank 5
    assert text_top_k(scores, 0, 5, ks=(1, 5)) == {"top1": 0.0, "top5": 0.0}  # rank 6


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([[1.0, 0.0], [0.0, 1.0]], (1, 1, 1)),
        ([[0.5, 0.0], [0.6, 1.0]], (1, 0, 0)),  # caption 0 prefers image 1
        ([[0.5, 0.6], [0.0, 1.0]], (0, 1, 0)),
        ([[0.5, 0.5], [0.0, 1.0]], (0, 1, 0)),  # tie between captions on image 0
        ([[0.5, 0.0], [0.5, 1.0]], (1, 0, 0)),  # tie between images for caption 0
        ([[0.0, 1.0], [1.0, 0.0]], (0, 0, 0)),
    ],
)
def test_winoground_truth_table(scores, expected):
    # scores[image][text]
    outcome = winoground_outcomes(scores)
    assert (outcome["text"], outcome["image"], outcome["group"]) == expected


def test_aggregate_overall_and_per_tag():
    outcomes = [{"accuracy": 1.0}, {"accuracy": 0.0}, {"accuracy": 1.0}, {"accuracy": 1.0}]
    tags = [{"neg_value": "subject"}, {"neg_value": "subject"}, {"neg_value": "verb"}, {}]
    metrics, breakdown = aggregate(outcomes, tags)
    assert metrics == {"accuracy": 0.75}
    assert breakdown == {"neg_value": {"subject": {"n": 2, "accuracy": 0.5}, "verb": {"n": 1, "accuracy": 1.0}}}


def test_a_task_whose_outcomes_name_other_metrics_for_some_examples_is_refused():
    from vlbench.errors import VlbenchError
    from vlbench.metrics import compute_metrics
    from vlbench.records import ScoredExample

    class Uneven:
        name = "uneven"

        def outcomes(self, scores, positives):
            return {"accuracy": 1.0, **({"margin_ok": 1.0} if scores[0][0] > 0 else {})}

        def summarize(self, results):
            return {}

    scored = [ScoredExample(f"e{i}", [[float(i)], [0.0]], [[0, 0]], {}) for i in range(3)]
    with pytest.raises(VlbenchError, match=r"task 'uneven': outcomes\(\) gave \['accuracy', 'margin_ok'\] for example 'e1' but \['accuracy'\] for 'e0'; it must give the same metrics for every example"):
        compute_metrics(Uneven(), scored)
