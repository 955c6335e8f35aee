"""The shared training loop holds one example's graph at a time and still steps on the batch mean
gradient; UNet gradient checkpointing trains the same parameters with less held activation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import vlbench
from vlbench.evaluation import load_images
from vlbench.losses import example_loss
from vlbench.training import TrainConfig, fit_by_scores
from vlbench.types import Example, ImageRef


class LoggingMatcher:
    """Scores image i against text j as w·x_ij for fixed features; logs each scoring and each
    backward through a score."""

    def __init__(self, log: list[str]) -> None:
        self.runtime = SimpleNamespace(seed=0)
        self.weight = torch.nn.Parameter(torch.tensor([0.5, -0.25, 1.0]))
        self.log = log

    def trainable_parameters(self):
        return [self.weight]

    def features(self, example_id: str) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(example_id.removeprefix("e")))
        return torch.randn(2, 2, 3, generator=generator)

    def score(self, images, texts):
        example_id = images[0]
        self.log.append(f"score {example_id}")
        scores = self.features(example_id) @ self.weight
        scores.register_hook(lambda grad: self.log.append(f"backward {example_id}"))
        return scores


def toy_examples(count: int) -> list[Example]:
    return [Example(f"e{i}", (ImageRef(f"i{i}", render=object), ImageRef(f"j{i}", render=object)), ("a", "b"), ((0, 0), (1, 1)), {}) for i in range(count)]


def by_id(example: Example):
    return [example.id]


def test_each_example_is_backpropagated_before_the_next_is_scored():
    log: list[str] = []
    fit_by_scores(LoggingMatcher(log), toy_examples(4), TrainConfig(epochs=1, batch_size=4), by_id)
    assert len(log) == 8
    for scored, backward in zip(log[::2], log[1::2]):
        assert scored.startswith("score ") and backward == scored.replace("score", "backward")


def test_scores_without_a_gradient_are_named_as_the_matcher_s_not_torch_s():
    from vlbench.errors import VlbenchError

    class Detached(LoggingMatcher):
        name = "detached"

        def score(self, images, texts):
            return (self.features(images[0]) @ self.weight).detach()

    with pytest.raises(VlbenchError, match=r"^matcher 'detached': the scores of 'e\d' carry no gradient to its trained parameters, so training cannot change them; score\(\) must compute them differentiably"):
        fit_by_scores(Detached([]), toy_examples(2), TrainConfig(epochs=1, batch_size=2), by_id)


@pytest.mark.parametrize("loss", ["bce", "ce", "hinge"])
def test_a_step_follows_the_mean_gradient_of_the_batch(loss):
    examples = toy_examples(3)
    matcher = LoggingMatcher([])
    start = matcher.weight.detach().clone()
    weight = start.clone().requires_grad_(True)
    mean = sum(example_loss(matcher.features(example.id) @ weight, example.positives, loss, 0.1) for example in examples) / len(examples)
    (gradient,) = torch.autograd.grad(mean, weight)
    fit_by_scores(matcher, examples, TrainConfig(loss=loss, epochs=1, batch_size=3, optimizer="sgd", momentum=0.0, lr=0.5, grad_clip=None), by_id)
    torch.testing.assert_close(matcher.weight.detach(), start - 0.5 * gradient, atol=1e-7, rtol=0)


def _attention_calls(matcher) -> list[int]:
    calls = [0]
    first = next(module for name, module in matcher.sd.unet.named_modules() if name.endswith("attn2"))
    first.register_forward_pre_hook(lambda module, args: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_gradient_checkpointing_recomputes_in_backward_and_trains_the_same_prompts():
    from vlbench.tasks.miniworld.tasks import MiniComVGOptions, MiniComVGTask

    items = MiniComVGTask(MiniComVGOptions(), None).examples(seed=0)[:4]
    train = TrainConfig(epochs=1, batch_size=2, lr=1e-2)
    trained, calls = {}, {}
    for checkpointing in (False, True):
        matcher = vlbench.create_matcher("dsd", model="mini", device="cpu", feature_cache=False, gradient_checkpointing=checkpointing)
        counter = _attention_calls(matcher)
        matcher.fit(items, train, load_images)
        trained[checkpointing], calls[checkpointing] = matcher.state_dict(), counter[0]
        with torch.no_grad():
            before = counter[0]
            matcher.score(load_images(items[0]), items[0].texts)
            assert counter[0] - before == 1  # scoring is not checkpointed: one call per UNet batch
    # dsd's fit scores every example once without gradients (calibration), then trains: with
    # checkpointing each trained UNet call runs that layer a second time, in backward.
    assert calls[True] - calls[False] == calls[False] - len(items)
    assert trained[True].keys() == trained[False].keys()
    for key in trained[False]:
        torch.testing.assert_close(trained[True][key], trained[False][key], atol=1e-5, rtol=1e-4)
