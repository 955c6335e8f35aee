"""The mini-world: scenes of coloured shapes in spatial relations, and their pictures.

Everything is drawn from a `random.Random` the caller seeds, so a (seed, size) pair always
gives the same scenes, pixels and captions.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 205, 40)}
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("left of", "right of", "above", "below")
BACKGROUND = (245, 245, 245)
# Unit offsets of the object relative to the subject for "subject <relation> object".
OFFSETS = {"left of": (1, 0), "right of": (-1, 0), "above": (0, 1), "below": (0, -1)}


@dataclass(frozen=True)
class Thing:
    color: str
    shape: str

    @property
    def phrase(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Placed:
    """A thing drawn centred at (x, y) with half-size `radius`, in pixels."""

    thing: Thing
    x: float
    y: float
    radius: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        """COCO box: x, y, width, height."""
        return (self.x - self.radius, self.y - self.radius, 2 * self.radius, 2 * self.radius)


@dataclass(frozen=True)
class Fact:
    """`subject <relation> object`, e.g. a red circle left of a blue square."""

    subject: Thing
    relation: str
    object: Thing

    @property
    def sentence(self) -> str:
        return f"a {self.subject.phrase} {self.relation} a {self.object.phrase}"

    @property
    def triplet(self) -> tuple[str, str, str]:
        return (self.subject.phrase, self.relation, self.object.phrase)


CONVERSES = {"right of": "left of", "below": "above"}  # "A right of B" says what "B left of A" says
RELATION_SENTENCE = re.compile(rf"a (\w+ \w+) ({'|'.join(RELATIONS)}) a (\w+ \w+)")


def one_meaning(caption: str) -> str:
    """A relation sentence as one string per meaning: its converse ("a blue square right of a red
    circle" for "a red circle left of a blue square") gives the same string; other captions are
    returned as they are."""
    match = RELATION_SENTENCE.fullmatch(caption)
    if match is None:
        return caption
    subject, relation, object_ = match.groups()
    if relation in CONVERSES:
        subject, relation, object_ = object_, CONVERSES[relation], subject
    return f"a {subject} {relation} a {object_}"


def random_thing(rng: random.Random, avoid: Thing | None = None) -> Thing:
    while True:
        thing = Thing(rng.choice(sorted(COLORS)), rng.choice(SHAPES))
        if thing != avoid:
            return thing


def random_fact(rng: random.Random) -> Fact:
    subject = random_thing(rng)
    return Fact(subject, rng.choice(RELATIONS), random_thing(rng, avoid=subject))


def swapped(fact: Fact, part: str, rng: random.Random) -> Fact:
    """`fact` with its subject, object or relation ("verb") replaced by a different one."""
    if part == "subject":
        return replace(fact, subject=random_thing(rng, avoid=fact.subject))
    if part == "object":
        return replace(fact, object=random_thing(rng, avoid=fact.object))
    if part == "verb":
        return replace(fact, relation=rng.choice([r for r in RELATIONS if r != fact.relation]))
    raise ValueError(f"unknown part '{part}'")


def place_fact(fact: Fact, size: int, rng: random.Random) -> list[Placed]:
    """The subject and object placed so that only `fact.relation` holds between them."""
    radius = size * rng.uniform(0.13, 0.17)
    distance = size * rng.uniform(0.45, 0.55)
    dx, dy = OFFSETS[fact.relation]
    centre_x, centre_y = size / 2 + rng.uniform(-1, 1) * size * 0.05, size / 2 + rng.uniform(-1, 1) * size * 0.05
    # Along the relation's axis the two objects sit `distance` apart; across it, nearly aligned.
    jitter = rng.uniform(-1, 1) * size * 0.04
    subject_x = centre_x - dx * distance / 2 + (jitter if dx == 0 else 0)
    subject_y = centre_y - dy * distance / 2 + (jitter if dy == 0 else 0)
    return [
        Placed(fact.subject, subject_x, subject_y, radius),
        Placed(fact.object, subject_x + dx * distance, subject_y + dy * distance, radius),
    ]


def place_scattered(things: list[Thing], size: int, rng: random.Random) -> list[Placed]:
    """`things` at random non-overlapping places (for counting and referring scenes)."""
    placed: list[Placed] = []
    for thing in things:
        radius = size * rng.uniform(0.09, 0.12)
        for _ in range(1000):
            x, y = (rng.uniform(radius + 1, size - radius - 1) for _ in range(2))
            if all((x - p.x) ** 2 + (y - p.y) ** 2 > (radius + p.radius + 2) ** 2 for p in placed):
                break
        else:
            raise RuntimeError(f"cannot place {len(things)} objects on a {size}px canvas")
        placed.append(Placed(thing, x, y, radius))
    return placed


def draw(objects: list[Placed], size: int):
    """The scene as an RGB PIL image."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), BACKGROUND)
    pen = ImageDraw.Draw(image)
    for item in objects:
        x, y, r = item.x, item.y, item.radius
        fill = COLORS[item.thing.color]
        if item.thing.shape == "circle":
            pen.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        elif item.thing.shape == "square":
            pen.rectangle((x - r * 0.85, y - r * 0.85, x + r * 0.85, y + r * 0.85), fill=fill)
        else:
            pen.polygon([(x, y - r), (x - r, y + r * 0.8), (x + r, y + r * 0.8)], fill=fill)
    return image


def side_of(item: Placed, size: int) -> str:
    """Where an object sits in the picture, for referring expressions."""
    dx, dy = item.x - size / 2, item.y - size / 2
    if abs(dx) >= abs(dy):
        return "on the left" if dx < 0 else "on the right"
    return "at the top" if dy < 0 else "at the bottom"
