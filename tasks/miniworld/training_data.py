"""Image-caption pairs for training the mini-world models, drawn from a training seed.

Two-object pictures come in two kinds of captions. Web-like (`WebCaptions`, what the mini CLIP's
shipped heads see): the way alt-text describes photos, the data real CLIP learns from: the objects
and their colours reliably, the relation often not at all or wrongly, colours now and then on the
wrong object, and never beside a minimal-pair twin; a model trained on them knows objects and
attributes but is weak at composition, which ComVG's predicate swaps and Winoground ask about.
Exact (the mini SD's, and the mini CLIP towers' second objective): every sentence beside its
swapped twin (picture and sentence), the hard negatives a ranking or contrastive term needs.
Question-answer captions come with the same question's wrong answers as text-only negatives.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from vlbench.tasks.miniworld.scenes import COLORS, RELATIONS, SHAPES, Fact, Thing, draw, place_fact, place_scattered, random_fact, random_thing, side_of, swapped
from vlbench.tasks.miniworld.writers import questions

ANSWERS = (*sorted(COLORS), *SHAPES, *(str(n) for n in range(5)), "yes", "no")


@dataclass
class Pair:
    image: object  # PIL image
    caption: str
    wrong_captions: tuple[str, ...] = ()


def relation_twins(rng: random.Random, size: int) -> list[Pair]:
    """An exact relation sentence and one swapped twin (subject, object, relation, argument order or
    the two colours)."""
    fact = random_fact(rng)
    kind = rng.choice(("subject", "object", "verb", "arguments", "colors"))
    if kind == "arguments":
        twin = Fact(fact.object, fact.relation, fact.subject)
    elif kind == "colors" and fact.subject.color != fact.object.color:
        twin = Fact(Thing(fact.object.color, fact.subject.shape), fact.relation, Thing(fact.subject.color, fact.object.shape))
    else:
        twin = swapped(fact, kind if kind in ("subject", "object", "verb") else "subject", rng)
    return [Pair(draw(place_fact(shown, size, rng), size), shown.sentence) for shown in (fact, twin)]


@dataclass(frozen=True)
class WebCaptions:
    """How often an alt-text-like caption of `subject <relation> object` states the relation
    rightly or wrongly (the rest omit it: "a red circle and a blue square", in either order), and
    how often it binds the two colours to the wrong objects. By default a stated relation is right
    only as often as chance (one in four: 15% right, 45% one of the other three)."""

    relation_right: float = 0.15
    relation_wrong: float = 0.45
    colors_swapped: float = 0.15


def web_relation_pair(rng: random.Random, size: int, captions: WebCaptions) -> Pair:
    """A two-object picture and its web-like caption."""
    fact = random_fact(rng)
    picture = draw(place_fact(fact, size, rng), size)
    said = fact
    if rng.random() < captions.colors_swapped:
        said = Fact(Thing(fact.object.color, fact.subject.shape), fact.relation, Thing(fact.subject.color, fact.object.shape))
    stated = rng.random()
    if stated < captions.relation_right:
        return Pair(picture, said.sentence)
    if stated < captions.relation_right + captions.relation_wrong:
        return Pair(picture, replace(said, relation=rng.choice([r for r in RELATIONS if r != said.relation])).sentence)
    first, second = rng.sample([said.subject, said.object], 2)
    return Pair(picture, f"a {first.phrase} and a {second.phrase}")


def referring_pair(rng: random.Random, size: int) -> Pair:
    things: list[Thing] = []
    while len(things) < rng.randint(2, 4):
        thing = random_thing(rng)
        if thing not in things:
            things.append(thing)
    placed = place_scattered(things, size, rng)
    target = rng.choice(placed)
    caption = f"the {target.thing.phrase}" + (f" {side_of(target, size)}" if rng.random() < 0.5 else "")
    return Pair(draw(placed, size), caption)


def question_pair(rng: random.Random, size: int) -> Pair:
    things = [random_thing(rng) for _ in range(rng.randint(1, 4))]
    placed = place_scattered(things, size, rng)
    question, answer, _ = rng.choice(questions(things, rng))
    wrong = tuple(f"{question} {other}" for other in rng.sample([a for a in ANSWERS if a != answer], 3))
    return Pair(draw(placed, size), f"{question} {answer}", wrong)


def relation_twin_groups(seed: int, n_groups: int, size: int = 32) -> list[list[Pair]]:
    """`n_groups` exact relation sentences, each beside its swapped twin (the mini CLIP towers'
    second objective)."""
    rng = random.Random(f"miniworld-twins:{seed}")
    return [relation_twins(rng, size) for _ in range(n_groups)]


def training_groups(seed: int, n_pairs: int, size: int = 32, captions: WebCaptions | None = None) -> list[list[Pair]]:
    """About `n_pairs` pairs in groups that must share a batch: half two-object pictures (with
    `captions`, each alone under a web-like caption; without, each exact sentence beside its
    swapped twin), a quarter referring expressions, a quarter question-answers."""
    rng = random.Random(f"miniworld-training:{seed}")
    groups: list[list[Pair]] = []
    total = 0
    while total < n_pairs:
        draw_kind = rng.random()
        if draw_kind < 0.5:
            group = relation_twins(rng, size) if captions is None else [web_relation_pair(rng, size, captions)]
        elif draw_kind < 0.75:
            group = [referring_pair(rng, size)]
        else:
            group = [question_pair(rng, size)]
        groups.append(group)
        total += len(group)
    return groups
