"""A CLIP BPE tokenizer over the mini-world's words, written as `vocab.json` + `merges.txt`.

BPE is learned on the vocabulary so that every mini-world word is a single token; any other
text still tokenizes, falling back to characters.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from pathlib import Path

from vlbench.tasks.miniworld.scenes import COLORS, SHAPES

WORDS = (
    *COLORS, *SHAPES, *(f"{shape}s" for shape in SHAPES), *(str(n) for n in range(10)),
    "a", "an", "the", "left", "right", "of", "above", "below", "on", "at", "top", "bottom", "what",
    "color", "shape", "is", "are", "there", "how", "many", "object", "yes", "no", "and", "in",
)
SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def learn_merges(words: tuple[str, ...]) -> list[tuple[str, str]]:
    """Byte-pair merges, most frequent pair first, until every word is one symbol."""
    sequences = {word: [*word[:-1], word[-1] + "</w>"] for word in sorted(set(words))}
    merges = []
    while True:
        pairs = Counter(pair for symbols in sequences.values() for pair in zip(symbols, symbols[1:]))
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        for word, symbols in sequences.items():
            merged, index = [], 0
            while index < len(symbols):
                if index + 1 < len(symbols) and (symbols[index], symbols[index + 1]) == best:
                    merged.append(symbols[index] + symbols[index + 1])
                    index += 2
                else:
                    merged.append(symbols[index])
                    index += 1
            sequences[word] = merged


def write_tokenizer(out_dir: Path, max_length: int = 77) -> int:
    """Write a CLIPTokenizer folder; returns the vocabulary size."""
    merges = learn_merges(WORDS)
    characters = string.ascii_lowercase + string.digits + string.punctuation
    tokens = [*characters, *(c + "</w>" for c in characters), *("".join(pair) for pair in merges), *SPECIAL]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(vocab))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    config = {
        "tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "do_lower_case": True,
        "bos_token": SPECIAL[0], "eos_token": SPECIAL[1], "unk_token": SPECIAL[1], "pad_token": SPECIAL[1],
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out_dir / "special_tokens_map.json").write_text(json.dumps({"bos_token": SPECIAL[0], "eos_token": SPECIAL[1], "unk_token": SPECIAL[1], "pad_token": SPECIAL[1]}, indent=2))
    return len(vocab)
