"""The run record contract (DESIGN.md): every job (load, chaos, drill) writes one
schema-versioned JSON document under ``reports/out/<run-id>/``, and the report builder reads
only these. Writes are atomic, so a reader never sees half a record; a reader refuses a
schema or version it does not know, and a record missing a field it needs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["RecordError", "read", "write"]


class RecordError(ValueError):
    """A run record that is missing, unreadable, of another schema or incomplete."""


def write(path: Path, record: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read(path: Path, schema: str, version: int, fields: Iterable[str] = ()) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RecordError(f"cannot read run record {path}: {exc}") from exc
    if not isinstance(record, dict):
        raise RecordError(f"{path}: not a JSON object")
    if record.get("schema") != schema or record.get("schema_version") != version:
        raise RecordError(
            f"{path}: schema {record.get('schema')!r} version"
            f" {record.get('schema_version')!r}, expected {schema} v{version}"
        )
    absent = [f for f in fields if f not in record]
    if absent:
        raise RecordError(f"{path}: missing fields {', '.join(absent)}")
    return record
