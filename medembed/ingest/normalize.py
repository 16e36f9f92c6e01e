"""Raw records -> normalized documents, or quarantine records with a reason. Pure functions."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from medembed import schema as S
from medembed.config import InputConfig

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_SURROGATE = re.compile(r"[\udc80-\udcff]")


@dataclass
class Normalized:
    docs: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, str]] = field(default_factory=list)

    def extend(self, other: Normalized) -> None:
        self.docs.extend(other.docs)
        self.quarantine.extend(other.quarantine)


def quarantine_record(source: str, location: str, reason: str, detail: str, record: Any) -> dict[str, str]:
    if not isinstance(record, str):
        try:
            record = json.dumps(record, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            record = repr(record)
    record = _SURROGATE.sub("\ufffd", record)
    return {
        S.Q_SOURCE: source,
        S.Q_LOCATION: location,
        S.Q_REASON: reason,
        S.Q_DETAIL: _SURROGATE.sub("\ufffd", detail),
        S.Q_RECORD: record[: S.RECORD_PREVIEW_CHARS],
    }


def clean_text(value: str) -> str:
    """NFC, no control characters, collapsed runs of spaces, trimmed lines; newlines kept."""
    text = unicodedata.normalize("NFC", value).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(" ", text)
    lines = [_SPACES.sub(" ", ln).strip() for ln in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from CSV/pandas
        return None
    if isinstance(value, (list, tuple)):
        return "\n".join(str(v) for v in value if v is not None)
    return str(value)


def _has_surrogates(record: dict[str, Any]) -> str | None:
    for k, v in record.items():
        if isinstance(v, str) and _SURROGATE.search(v):
            return str(k)
        if isinstance(k, str) and _SURROGATE.search(k):
            return str(k)
    return None


def normalize_record(record: Any, source: str, location: str, cfg: InputConfig) -> tuple[dict | None, dict | None]:
    """One raw record -> (document, None) or (None, quarantine record)."""
    where = f"{source}:{location}"
    if not isinstance(record, dict):
        return None, quarantine_record(source, location, S.R_NOT_AN_OBJECT,
                                       f"{where}: expected an object, got {type(record).__name__}", record)
    bad_field = _has_surrogates(record)
    if bad_field is not None:
        return None, quarantine_record(source, location, S.R_UNDECODABLE,
                                       f"{where}: field {bad_field!r} holds bytes that are not valid UTF-8", record)
    doc_id = _as_text(record.get(cfg.id_field))
    if doc_id is None or not doc_id.strip():
        return None, quarantine_record(source, location, S.R_MISSING_ID,
                                       f"{where}: id field {cfg.id_field!r} is missing or empty", record)
    doc_id = doc_id.strip()
    parts = [_as_text(record.get(f)) for f in cfg.text_fields]
    if all(p is None for p in parts):
        return None, quarantine_record(source, location, S.R_MISSING_TEXT,
                                       f"{where}: none of the text fields {cfg.text_fields} is present (id={doc_id})",
                                       record)
    text = clean_text("\n\n".join(p for p in parts if p))
    if not text:
        return None, quarantine_record(source, location, S.R_EMPTY_TEXT,
                                       f"{where}: text fields {cfg.text_fields} are empty (id={doc_id})", record)
    if len(text) > cfg.max_chars:
        return None, quarantine_record(
            source, location, S.R_TOO_LONG,
            f"{where}: text has {len(text)} characters, more than input.max_chars={cfg.max_chars} (id={doc_id})",
            record)
    title = _as_text(record.get(cfg.title_field)) if cfg.title_field else None
    meta = {f: record[f] for f in cfg.metadata_fields if f in record and record[f] is not None}
    return {
        S.DOC_ID: doc_id,
        S.TITLE: clean_text(title) if title else "",
        S.TEXT: text,
        S.METADATA: json.dumps(meta, ensure_ascii=False, default=str, sort_keys=True),
        S.SOURCE: where,
    }, None


def normalize_records(items: Iterable[tuple[Any, str, str]], cfg: InputConfig) -> Normalized:
    """Normalize (record, source, location) triples; duplicate ids within the batch are quarantined."""
    out = Normalized()
    seen: dict[str, str] = {}
    for record, source, location in items:
        doc, bad = normalize_record(record, source, location, cfg)
        if bad is not None:
            out.quarantine.append(bad)
            continue
        assert doc is not None
        first = seen.get(doc[S.DOC_ID])
        if first is not None:
            out.quarantine.append(quarantine_record(
                source, location, S.R_DUPLICATE_ID,
                f"{source}:{location}: id {doc[S.DOC_ID]!r} was already read at {first}", record))
            continue
        seen[doc[S.DOC_ID]] = doc[S.SOURCE]
        out.docs.append(doc)
    return out
