"""`vqav2`: VQAv2 as question+answer text matching: one image, ten "question answer" texts.

Two sources:
- `csv`: the DSD release's `vqa_text_test.csv` (`sentence,pos_image_id,neg_sentence_1..9`; COCO
  val2014 images). Its negatives never use yes/no, so the 386 (of 1,000) positives whose answer
  is yes/no are a surface shortcut; `vlbench data check` reports the count. The answer type is
  derived from the answer (yes/no → binary, digits → number, else other). A negative identical
  to the positive (one row of the released file, line 684) is dropped: it would tie with the
  positive for every matcher, and a tie is never right, so the example could never be; the
  release's argmax counted it right. `data check` reports such examples.
- `official`: the VQAv2 question and annotation json. Candidates: the most common answer
  (`multiple_choice_answer`, the positive: top-1 over ten texts, not VQA's soft accuracy) plus 9
  answers drawn with the run's seed from `major_answers.json`, excluding every answer a human gave
  the question, compared under a key modelled on VQA's evaluation normalisation (`answer_key`:
  lower case, number words as digits, no articles, punctuation and apostrophes dropped; a key
  that over-merges only ever leaves out more): the vocabulary holds VQA's
  normalised forms, so a question answered "two" must not draw "2", nor one answered "dont know"
  draw "don't know". Negatives are distinct under the same key. The answer type is the annotation's.

With `source: csv`, `train_file` names a training csv in the same format (the release's
`vqa_text_train.csv`, built from VQAv2 train; images `train_images`/COCO_train2014_*.jpg): few-shot
examples are drawn from it and the whole test csv is evaluated, as in the paper. Without it,
few-shot examples are split off the test csv by image.

Metrics: top-1 and top-5 over the ten texts, overall and per `answer_type` (binary, number, other).
"""

from __future__ import annotations

import functools
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vlbench.errors import VlbenchError
from vlbench.identity import image_files
from vlbench.metrics import text_top_k
from vlbench.options import check
from vlbench.readers import read_csv, read_json, require_keys
from vlbench.types import Example, ImageRef, Task

CSV_COLUMNS = ("sentence", "pos_image_id", *(f"neg_sentence_{i}" for i in range(1, 10)))
ANSWER_TYPES = {"yes/no": "binary", "number": "number", "other": "other"}
N_CANDIDATES = 10
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = {"a", "an", "the"}
PUNCTUATION = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%&^|~]")
DROPPED = re.compile(r"(?<=\d),(?=\d)|\.(?!\d)|'")  # a comma inside a number, a period not before a digit (VQA's), apostrophes


@dataclass
class VQAv2Options:
    source: Literal["csv", "official"] = "csv"
    csv: str = "vqa_text_test.csv"
    csv_images: str = "val2014"
    train_file: str | None = None  # with source csv: a training csv (the release's vqa_text_train.csv)
    train_images: str = "train2014"
    eval_split: str = "val"
    train_split: str | None = "train"
    major_answers: str = "major_answers.json"

    def __post_init__(self) -> None:
        check(self.train_file is None or self.source == "csv", "train_file", "is read with source: csv; with source: official, few-shot examples come from train_split")


class VQAv2Task(Task):
    name = "vqav2"
    version = "3"  # 2: a csv negative identical to the positive is dropped; 3: official negatives exclude answers equal under `answer_key`
    summary = "VQAv2 as text matching: rank 'question answer' for the true answer among 10 candidates."
    Options = VQAv2Options

    @property
    def examples_vary_by_seed(self) -> bool:  # type: ignore[override]
        """The csv's rows are the examples; official negatives are drawn per seed."""
        return self.options.source == "official"

    def examples(self, seed: int) -> list[Example]:
        if self.options.source == "csv":
            return self._from_csv(self.options.csv, self.options.csv_images, "val2014", "vqav2")
        return self._official(self.options.eval_split, seed)

    def train_pool(self, seed: int) -> list[Example] | None:
        if self.options.source == "csv":
            return None if self.options.train_file is None else self._from_csv(self.options.train_file, self.options.train_images, "train2014", "vqav2-train")
        return None if self.options.train_split is None else self._official(self.options.train_split, seed)

    def source_files(self, pool, train_pool) -> list[Path]:
        if self.options.source == "csv":
            tables = [self.options.csv, *((self.options.train_file,) if train_pool is not None else ())]
        else:
            splits = [self.options.eval_split, *((self.options.train_split,) if train_pool is not None else ())]
            tables = [*(name for split in splits for name in _official_files(split)), self.options.major_answers]
        return [*(self.data_file(name) for name in tables), *image_files([*pool, *(train_pool or [])])]

    def outcomes(self, scores, positives) -> dict[str, float]:
        (image, text), = positives
        return text_top_k(scores, image, text, ks=(1, 5))

    def statistics(self, examples: list[Example]) -> dict[str, Any]:
        shortcut = sum(1 for e in examples if _answer(e.texts[0], e.texts) in ("yes", "no") and not any(_answer(t, e.texts) in ("yes", "no") for t in e.texts[1:]))
        fewer = sum(1 for e in examples if len(e.texts) < N_CANDIDATES)
        return {"yes/no positives whose negatives are never yes/no (surface shortcut)": shortcut, f"examples with fewer than {N_CANDIDATES} candidates (a negative identical to the positive, dropped)": fewer}

    def describe(self) -> str:
        if self.options.source == "csv":
            return (
                f"<root>/{self.options.csv} (columns {','.join(CSV_COLUMNS)}) and images "
                f"<root>/{self.options.csv_images}/COCO_val2014_<12-digit image id>.jpg. The csv ships "
                "with the DSD release (data/vqa_text_test.csv); the images are COCO val2014 (cocodataset.org)."
                + (
                    f" Training: <root>/{self.options.train_file} (same columns; the release's data/vqa_text_train.csv from its "
                    f"Google Drive link) and images <root>/{self.options.train_images}/COCO_train2014_<12-digit image id>.jpg."
                    if self.options.train_file else ""
                )
            )
        return (
            "<root>/v2_OpenEnded_mscoco_<split>2014_questions.json, <root>/v2_mscoco_<split>2014_annotations.json "
            f"(from visualqa.org), <root>/{self.options.major_answers} (the 3,129-answer vocabulary, DSD release "
            "utils/major_answers.json) and images <root>/<split>2014/COCO_<split>2014_<12-digit image id>.jpg (cocodataset.org)."
        )

    def _from_csv(self, csv: str, image_folder: str, coco_split: str, id_prefix: str) -> list[Example]:
        path = self.data_file(csv)
        images = self.require_data_root() / image_folder
        examples = []
        for line, row in enumerate(read_csv(path, CSV_COLUMNS), start=2):
            texts = (row["sentence"], *(row[f"neg_sentence_{i}"] for i in range(1, 10) if row[f"neg_sentence_{i}"] != row["sentence"]))
            answer = _answer(row["sentence"], texts)
            image = ImageRef(row["pos_image_id"], images / f"COCO_{coco_split}_{int(row['pos_image_id']):012d}.jpg")
            examples.append(Example(f"{id_prefix}-{line - 1}", (image,), texts, ((0, 0),), {"answer_type": _answer_type(answer)}))
        return examples

    def _official(self, split: str, seed: int) -> list[Example]:
        questions_path, annotations_path = (self.data_file(name) for name in _official_files(split))
        vocabulary_path = self.data_file(self.options.major_answers)
        keys = {answer: answer_key(answer) for answer in read_json(vocabulary_path)}
        vocabulary, distinct = list(keys), set(keys.values())
        questions = _records(read_json(questions_path), "questions", questions_path, ("image_id", "question", "question_id"))
        annotations = {
            record["question_id"]: record
            for record in _records(read_json(annotations_path), "annotations", annotations_path, ("question_id", "answer_type", "multiple_choice_answer", "answers"))
        }
        images = self.require_data_root() / f"{split}2014"
        examples = []
        for question in questions:
            annotation = annotations.get(question["question_id"])
            if annotation is None:
                raise VlbenchError(f"{annotations_path}: no annotation for question_id {question['question_id']} of {questions_path}")
            best = annotation["multiple_choice_answer"]
            taken = {answer_key(answer) for answer in {best, *(answer["answer"] for answer in annotation["answers"])}}
            if len(distinct) - len(taken & distinct) < N_CANDIDATES - 1:
                raise VlbenchError(f"{vocabulary_path}: fewer than {N_CANDIDATES - 1} answers other than question_id {question['question_id']}'s ({', '.join(sorted(taken))}) to draw its negatives from")
            rng = random.Random(f"vqav2-negatives:{seed}:{question['question_id']}")
            negatives: list[str] = []
            while len(negatives) < N_CANDIDATES - 1:
                candidate = rng.choice(vocabulary)
                if keys[candidate] not in taken:
                    negatives.append(candidate)
                    taken.add(keys[candidate])
            texts = tuple(f"{question['question']} {answer}" for answer in (best, *negatives))
            image = ImageRef(str(question["image_id"]), images / f"COCO_{split}2014_{question['image_id']:012d}.jpg")
            tags = {"answer_type": ANSWER_TYPES.get(annotation["answer_type"], annotation["answer_type"])}
            examples.append(Example(f"vqav2-{split}-{question['question_id']}", (image,), texts, ((0, 0),), tags))
        return examples


@functools.lru_cache(maxsize=1 << 16)  # the humans' answers repeat across questions
def answer_key(answer: str) -> str:
    """An answer's key for telling answers apart, modelled on VQA's evaluation normalisation: lower
    case; commas inside numbers, periods not before a digit ("u.s.a." is "usa") and apostrophes
    dropped (a contraction written without one matches); other punctuation as spaces; number words
    none and zero to ten as digits; articles dropped."""
    text = DROPPED.sub("", answer.lower())
    return " ".join(NUMBER_WORDS.get(word, word) for word in PUNCTUATION.sub(" ", text).split() if word not in ARTICLES)


def _official_files(split: str) -> tuple[str, str]:
    """The questions and annotations files of an official split."""
    return f"v2_OpenEnded_mscoco_{split}2014_questions.json", f"v2_mscoco_{split}2014_annotations.json"


def _records(document: Any, key: str, path, fields) -> list[dict[str, Any]]:
    if not isinstance(document, dict) or key not in document:
        raise VlbenchError(f"{path}: expected a JSON object with a '{key}' list")
    for index, record in enumerate(document[key]):
        require_keys(record, fields, f"{path}, {key}[{index}]")
    return document[key]


def _answer(sentence: str, texts: tuple[str, ...]) -> str:
    """The answer part of "question answer": after the question mark that ends the text shared
    by all candidates (answers may themselves share a prefix, such as "blue" and "blue and white")."""
    shared = os.path.commonprefix(list(texts))
    cut = shared.rfind("? ")
    start = cut + 2 if cut >= 0 else shared.rfind(" ") + 1
    return sentence[start:]


def _answer_type(answer: str) -> str:
    if answer in ("yes", "no"):
        return "binary"
    return "number" if answer.isdigit() else "other"
