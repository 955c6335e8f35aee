import math

import pytest
import torch

from vlbench.losses import candidate_sets, example_loss, midpoint_bias
from vlbench.training import TrainConfig, learning_rate


def test_bce_over_all_pairs():
    scores = torch.tensor([[2.0], [-1.0]])
    expected = (-math.log(1 / (1 + math.exp(-2.0))) - math.log(1 - 1 / (1 + math.exp(1.0)))) / 2
    assert example_loss(scores, [(0, 0)], "bce").item() == pytest.approx(expected)


def test_ce_over_text_candidates():
    scores = torch.tensor([[1.0, 2.0, 0.0]])
    expected = -math.log(math.exp(2.0) / (math.exp(1.0) + math.exp(2.0) + 1.0))
    assert example_loss(scores, [(0, 1)], "ce").item() == pytest.approx(expected)


def test_ce_runs_both_directions_on_a_square_matrix():
    scores = torch.tensor([[3.0, 1.0], [0.0, 2.0]])
    sets = candidate_sets(scores, [(0, 0), (1, 1)])
    assert [(values.tolist(), target) for values, target in sets] == [([3.0, 1.0], 0), ([3.0, 0.0], 0), ([0.0, 2.0], 1), ([1.0, 2.0], 1)]


def test_hinge_uses_the_hardest_negative():
    scores = torch.tensor([[0.50], [0.45], [0.30]])
    assert example_loss(scores, [(0, 0)], "hinge", margin=0.1).item() == pytest.approx(0.05)
    assert example_loss(scores, [(0, 0)], "hinge", margin=0.01).item() == 0.0


def test_losses_reach_the_scores_gradient():
    scores = torch.tensor([[0.2, 0.1]], requires_grad=True)
    example_loss(scores, [(0, 0)], "ce").backward()
    assert scores.grad[0, 0] < 0 < scores.grad[0, 1]


def test_midpoint_bias_centres_mean_positive_and_mean_negative():
    # positives 4 and 2 (mean 3); negatives 1, 0, 0, -1, 0 (mean 0): bias -1.5
    matrices = [torch.tensor([[4.0, 1.0, 0.0]]), torch.tensor([[0.0, -1.0], [0.0, 2.0]])]
    assert midpoint_bias(matrices, [[(0, 0)], [(1, 1)]]) == pytest.approx(-1.5)


def test_warmup_then_cosine_per_step():
    train = TrainConfig(lr=0.002, epochs=3, schedule="cosine", warmup_epochs=1, warmup_lr=1e-5)
    rates = [learning_rate(train, step, steps_per_epoch=2) for step in range(6)]
    decay = [0.5 * 0.002 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert rates == pytest.approx([1e-5, 1e-5, *decay])
    assert [learning_rate(TrainConfig(lr=0.1), step, 5) for step in (0, 7)] == [0.1, 0.1]


def dassl_learning_rates(lr: float, epochs: int, warmup_epochs: int, warmup_lr: float) -> list[float]:
    """Each epoch's learning rate as CoOp's trainers get it from Dassl's build_lr_scheduler
    (dassl/optim/lr_scheduler.py: CosineAnnealingLR(optimizer, max_epoch) inside a
    ConstantWarmupScheduler, WARMUP_RECOUNT true), stepped once at each epoch's end."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(epochs))
    rates = []
    for epoch in range(epochs):
        if epoch < warmup_epochs:
            rates.append(warmup_lr)
            continue
        if epoch > warmup_epochs:  # the warm-up hands its last step to the cosine's epoch 0
            optimizer.step()
            cosine.step()
        rates.append(cosine.get_last_lr()[0])
    return rates


@pytest.mark.parametrize(("epochs", "warmup_epochs"), [(10, 1), (4, 0), (6, 2), (3, 3)])
def test_epoch_cosine_is_coops_schedule_per_epoch(epochs, warmup_epochs):
    train = TrainConfig(lr=0.002, epochs=epochs, schedule="epoch_cosine", warmup_epochs=warmup_epochs, warmup_lr=1e-5)
    steps_per_epoch = 3
    rates = [learning_rate(train, step, steps_per_epoch) for step in range(epochs * steps_per_epoch)]
    assert rates == pytest.approx([rate for rate in dassl_learning_rates(0.002, epochs, warmup_epochs, 1e-5) for _ in range(steps_per_epoch)], rel=1e-9)
    assert rates[-1] > 0  # unlike `cosine`, the last epoch keeps a small rate
