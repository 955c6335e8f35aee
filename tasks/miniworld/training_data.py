"""Image-caption pairs for training the mini-world models, drawn from a training seed.

Every relation sentence comes with its subject-, object- or relation-swapped twin (picture and
sentence), so a contrastive batch holds the hard negatives ComVG and Winoground ask about.
Question-answer captions come with the same question's wrong answers as text-only negatives.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from vlbench.tasks.miniworld.scenes import COLORS, SHAPES, Fact, Thing, draw, place_fact, place_scattered, random_fact, random_thing, side_of, swapped
from vlbench.tasks.miniworld.writers import questions

ANSWERS = (*sorted(COLORS), *SHAPES, *(str(n) for n in range(5)), "yes", "no")


@dataclass
class Pair:
    image: object  # PIL image
    caption: str
    wrong_captions: tuple[str, ...] = ()


def relation_pairs(rng: random.Random, size: int) -> list[Pair]:
    """A relation sentence and one swapped twin (subject, object, relation or argument order)."""
    fact = random_fact(rng)
    kind = rng.choice(("subject", "object", "verb", "arguments", "colors"))
    if kind == "arguments":
        twin = Fact(fact.object, fact.relation, fact.subject)
    elif kind == "colors" and fact.subject.color != fact.object.color:
        twin = Fact(Thing(fact.object.color, fact.subject.shape), fact.relation, Thing(fact.subject.color, fact.object.shape))
    else:
        twin = swapped(fact, kind if kind in ("subject", "object", "verb") else "subject", rng)
    return [Pair(draw(place_fact(shown, size, rng), size), shown.sentence) for shown in (fact, twin)]


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


def training_groups(seed: int, n_pairs: int, size: int = 32) -> list[list[Pair]]:
    """About `n_pairs` pairs in groups that must share a batch (a sentence and its twin): half
    relation sentences, a quarter referring expressions, a quarter question-answers."""
    rng = random.Random(f"miniworld-training:{seed}")
    groups: list[list[Pair]] = []
    total = 0
    while total < n_pairs:
        draw_kind = rng.random()
        if draw_kind < 0.5:
            group = relation_pairs(rng, size)
        elif draw_kind < 0.75:
            group = [referring_pair(rng, size)]
        else:
            group = [question_pair(rng, size)]
        groups.append(group)
        total += len(group)
    return groups
