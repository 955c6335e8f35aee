"""Reading annotation files with errors that name the file, the line and what to do.

Text files are read as UTF-8; a UTF-8 byte-order mark (Excel writes one) is skipped. A file in
another encoding is refused with the encoding it most likely is, to convert from.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlbench.errors import VlbenchError


def read_text(path: Path) -> str:
    """The file's text: UTF-8, with or without a byte-order mark."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise VlbenchError(
            f"{path}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); it looks like {_likely_encoding(data)}: "
            f"convert it to UTF-8, e.g. `iconv -f {_iconv_name(data)} -t utf-8 {Path(path).name} > converted{Path(path).suffix}`"
        ) from None


def _likely_encoding(data: bytes) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "UTF-16"
    try:
        data.decode("cp1252")
        return "Windows-1252 (Latin-1)"
    except UnicodeDecodeError:
        return "Latin-1"


def _iconv_name(data: bytes) -> str:
    return {"UTF-16": "utf-16", "Windows-1252 (Latin-1)": "cp1252"}.get(_likely_encoding(data), "latin1")


def read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a csv file with a header; a missing column or a short row is an error."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
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
        return json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise VlbenchError(f"{path}, line {error.lineno}, column {error.colno}: not valid JSON ({error.msg})") from None


def read_jsonl(path: Path) -> list[Any]:
    """One JSON document per non-empty line."""
    records = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
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
