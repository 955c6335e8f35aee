"""Write mini-world datasets in each benchmark's real on-disk layout, so the real loaders read them.

    <root>/comvg/       compositional_visual_genome.csv, vg_concept/<id>.jpg
    <root>/refcocog/    refs(umd).p, instances.json, images/train2014/COCO_train2014_<id>.jpg
    <root>/vqav2/       v2_OpenEnded_mscoco_{train,val}2014_questions.json,
                        v2_mscoco_{train,val}2014_annotations.json, major_answers.json,
                        {train,val}2014/COCO_{split}2014_<id>.jpg
    <root>/winoground/  data/examples.jsonl, data/images/<name>.png
"""

from __future__ import annotations

import csv
import json
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

from vlbench.tasks.miniworld.scenes import (
    COLORS,
    SHAPES,
    Fact,
    Thing,
    draw,
    place_fact,
    place_scattered,
    random_fact,
    random_thing,
    side_of,
    swapped,
)

GENERATOR_VERSION = "1"
NEG_PARTS = ("subject", "object", "verb")
COUNT_WORDS = {"circle": "circles", "square": "squares", "triangle": "triangles"}


@dataclass(frozen=True)
class Sizes:
    """How many examples each dataset gets."""

    comvg: int = 600
    refcocog_images: int = 300
    vqav2_images_per_split: int = 300
    winoground: int = 200


def write_all(root: Path, seed: int, image_size: int = 32, sizes: Sizes = Sizes()) -> None:
    """All four datasets under `root`, drawn from `seed`."""
    write_comvg(root / "comvg", random.Random(f"mini-comvg:{seed}"), image_size, sizes.comvg)
    write_refcocog(root / "refcocog", random.Random(f"mini-refcocog:{seed}"), image_size, sizes.refcocog_images)
    write_vqav2(root / "vqav2", random.Random(f"mini-vqav2:{seed}"), image_size, sizes.vqav2_images_per_split)
    write_winoground(root / "winoground", random.Random(f"mini-winoground:{seed}"), image_size, sizes.winoground)
    manifest = {"generator_version": GENERATOR_VERSION, "seed": seed, "image_size": image_size, "sizes": vars(sizes)}
    (root / "miniworld.json").write_text(json.dumps(manifest, indent=2) + "\n")


def write_comvg(root: Path, rng: random.Random, size: int, n: int) -> None:
    (root / "vg_concept").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(n):
        fact = random_fact(rng)
        part = NEG_PARTS[index % 3]
        negative = swapped(fact, part, rng)
        pos_id, neg_id = 2 * index + 1, 2 * index + 2
        for image_id, shown in ((pos_id, fact), (neg_id, negative)):
            _save(draw(place_fact(shown, size, rng), size), root / "vg_concept" / f"{image_id}.jpg")
        rows.append([index + 1, fact.sentence, ",".join(fact.triplet), str(negative.triplet), pos_id, neg_id, part])
    with open(root / "compositional_visual_genome.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "sentence", "pos_triplet", "neg_triplet", "pos_image_id", "neg_image_id", "neg_value"])
        writer.writerows(rows)


def write_refcocog(root: Path, rng: random.Random, size: int, n_images: int) -> None:
    images_dir = root / "images" / "train2014"
    images_dir.mkdir(parents=True, exist_ok=True)
    refs, images, annotations = [], [], []
    sent_id = 0
    for index in range(n_images):
        image_id = index + 1
        split = ("train", "train", "train", "train", "train", "train", "val", "val", "test", "test")[index % 10]
        things = _distinct_things(rng, rng.randint(2, 4))
        placed = place_scattered(things, size, rng)
        _save(draw(placed, size), images_dir / f"COCO_train2014_{image_id:012d}.jpg")
        images.append({"id": image_id, "file_name": f"COCO_train2014_{image_id:012d}.jpg", "width": size, "height": size})
        for slot, item in enumerate(placed):
            ann_id = image_id * 10 + slot
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": SHAPES.index(item.thing.shape) + 1, "bbox": list(item.box), "area": (2 * item.radius) ** 2, "iscrowd": 0})
            sentences = []
            for text in (f"the {item.thing.phrase}", f"the {item.thing.phrase} {side_of(item, size)}"):
                sentences.append({"raw": text, "sent": text, "tokens": text.split(), "sent_id": sent_id})
                sent_id += 1
            refs.append({"ref_id": ann_id, "ann_id": ann_id, "image_id": image_id, "split": split, "category_id": SHAPES.index(item.thing.shape) + 1, "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg", "sentences": sentences})
    with open(root / "refs(umd).p", "wb") as handle:
        pickle.dump(refs, handle)
    categories = [{"id": i + 1, "name": shape} for i, shape in enumerate(SHAPES)]
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def write_vqav2(root: Path, rng: random.Random, size: int, n_images: int) -> None:
    answers = [*sorted(COLORS), *SHAPES, *(str(n) for n in range(5)), "yes", "no"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "major_answers.json").write_text(json.dumps({answer: index for index, answer in enumerate(answers)}))
    for split, first_id in (("train", 1), ("val", 500_001)):
        (root / f"{split}2014").mkdir(exist_ok=True)
        question_records, annotations = [], []
        for index in range(n_images):
            image_id = first_id + index
            things = [random_thing(rng) for _ in range(rng.randint(1, 4))]
            placed = place_scattered(things, size, rng)
            _save(draw(placed, size), root / f"{split}2014" / f"COCO_{split}2014_{image_id:012d}.jpg")
            for slot, (question, answer, answer_type) in enumerate(questions(things, rng)):
                question_id = image_id * 10 + slot
                question_records.append({"image_id": image_id, "question": question, "question_id": question_id})
                annotations.append({
                    "question_id": question_id, "image_id": image_id, "answer_type": answer_type, "multiple_choice_answer": answer,
                    "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": k + 1} for k in range(10)],
                })
        (root / f"v2_OpenEnded_mscoco_{split}2014_questions.json").write_text(json.dumps({"questions": question_records}))
        (root / f"v2_mscoco_{split}2014_annotations.json").write_text(json.dumps({"annotations": annotations}))
    write_vqa_text_csv(root / "vqa_text_test.csv", question_records, annotations, answers, rng)  # val: the loop's last split


def write_vqa_text_csv(path: Path, questions: list[dict], annotations: list[dict], answers: list[str], rng: random.Random) -> None:
    """The DSD release's `vqa_text_test.csv` over `questions` (val): "question answer" against nine
    other answers to the same question, the image's COCO id."""
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "pos_image_id", *(f"neg_sentence_{i}" for i in range(1, 10))])
        for question, annotation in zip(questions, annotations):
            answer = annotation["multiple_choice_answer"]
            negatives = rng.sample([other for other in answers if other != answer], 9)
            writer.writerow([f"{question['question']} {answer}", question["image_id"], *(f"{question['question']} {other}" for other in negatives)])


def write_winoground(root: Path, rng: random.Random, size: int, n: int) -> None:
    images_dir = root / "data" / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(n):
        fact = random_fact(rng)
        while fact.subject.color == fact.object.color:
            fact = random_fact(rng)
        if index % 2 == 0:
            other, tag = Fact(Thing(fact.object.color, fact.subject.shape), fact.relation, Thing(fact.subject.color, fact.object.shape)), "Object"
        else:
            other, tag = Fact(fact.object, fact.relation, fact.subject), "Relation"
        names = []
        for slot, shown in enumerate((fact, other)):
            name = f"ex_{index}_img_{slot}"
            draw(place_fact(shown, size, rng), size).save(images_dir / f"{name}.png")
            names.append(name)
        lines.append({"id": index, "image_0": names[0], "image_1": names[1], "caption_0": fact.sentence, "caption_1": other.sentence, "tag": tag, "secondary_tag": "", "num_main_preds": 1, "collapsed_tag": tag})
    (root / "data" / "examples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def questions(things: list[Thing], rng: random.Random) -> list[tuple[str, str, str]]:
    """Two questions about a scene: (question, answer, official answer type)."""
    shapes = [thing.shape for thing in things]
    colors = [thing.color for thing in things]
    options = []
    unique_shape = [thing for thing in things if shapes.count(thing.shape) == 1]
    if unique_shape:
        thing = rng.choice(unique_shape)
        options.append((f"what color is the {thing.shape}?", thing.color, "other"))
    unique_color = [thing for thing in things if colors.count(thing.color) == 1]
    if unique_color:
        thing = rng.choice(unique_color)
        options.append((f"what shape is the {thing.color} object?", thing.shape, "other"))
    shape = rng.choice(SHAPES)
    options.append((f"how many {COUNT_WORDS[shape]} are there?", str(shapes.count(shape)), "number"))
    asked = rng.choice(things) if rng.random() < 0.5 else random_thing(rng)
    options.append((f"is there a {asked.phrase}?", "yes" if asked in things else "no", "yes/no"))
    return rng.sample(options, 2)


def _distinct_things(rng: random.Random, count: int) -> list[Thing]:
    things: list[Thing] = []
    while len(things) < count:
        thing = random_thing(rng)
        if thing not in things:
            things.append(thing)
    return things


def _save(image, path: Path) -> None:
    image.save(path, quality=95)

