"""Reading annotation files with errors that name the file, the line and what to do."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlbench.errors import VlbenchError


def read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a csv file with a header; a missing column or a short row is an error."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [name for name in required if name not in columns]
        if missing:
            raise VlbenchError(f"{path}: missing column(s) {', '.join(missing)}; the header has {', '.join(columns) or 'nothing'}")
        rows = []
        for row in reader:
            if None in row.values() or None in row:
                raise VlbenchError(f"{path}, line {reader.line_num}: expected {len(columns)} fields")
            rows.append(row)
    return rows


def read_json(path: Path) -> Any:
    """A JSON document; a parse error names the file, line and column."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise VlbenchError(f"{path}, line {error.lineno}, column {error.colno}: not valid JSON ({error.msg})") from None


def read_jsonl(path: Path) -> list[Any]:
    """One JSON document per non-empty line."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise VlbenchError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
    return records


def require_keys(record: dict[str, Any], keys: Sequence[str], where: str) -> None:
    """Fail with the missing key names if `record` lacks any of `keys`."""
    missing = [key for key in keys if key not in record]
    if missing:
        raise VlbenchError(f"{where}: missing field(s) {', '.join(missing)}")
