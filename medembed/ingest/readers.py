"""Format readers: a source (file or dataset slice) -> (record, source, location) triples.

Each reader turns what it cannot parse into a quarantine record instead of raising, so one bad
line never stops a corpus. Only an unreadable source as a whole is reported as such.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from typing import Any

from medembed import schema as S
from medembed.ingest.normalize import quarantine_record

Item = tuple[Any, str, str]  # (record, source, location)
Bad = dict[str, str]

csv.field_size_limit(sys.maxsize)


def _line_numbers(wanted: set[str] | None, unit: str) -> set[int] | None:
    """``{"line 3", "line 7"}`` -> ``{3, 7}``: the locations a second read of a source needs."""
    if wanted is None:
        return None
    return {int(w.split(" ", 1)[1]) for w in wanted if w.startswith(unit + " ")}


def read_jsonl(stream: io.BufferedIOBase, source: str, limit: int | None = None,
               wanted: set[str] | None = None) -> Iterator[Item | Bad]:
    """Yield records, or quarantine dicts (tagged by the ``reason`` key) for bad lines.

    Blank lines and lines starting with ``#`` (file headers/comments) are skipped. ``wanted`` (locations,
    "line N"): only those lines are decoded and parsed, the others are skipped unread past their bytes.
    """
    n = 0
    lines = _line_numbers(wanted, "line")
    last = max(lines, default=0) if lines is not None else None
    for lineno, raw in enumerate(stream, start=1):
        if lines is not None:
            if lineno > last:
                return
            if lineno not in lines:
                continue
        stripped = raw.strip()
        if not stripped or stripped.startswith(b"#"):
            continue
        try:
            line = stripped.decode("utf-8")
        except UnicodeDecodeError as e:
            yield quarantine_record(source, f"line {lineno}", S.R_UNDECODABLE,
                                    f"{source}:line {lineno}: not valid UTF-8 at byte {e.start}",
                                    stripped.decode("utf-8", "replace"))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            yield quarantine_record(source, f"line {lineno}", S.R_MALFORMED_JSON,
                                    f"{source}:line {lineno}: {e.msg} at column {e.colno}", line)
            continue
        yield record, source, f"line {lineno}"
        n += 1
        if limit and n >= limit:
            return


def read_csv(stream: io.BufferedIOBase, source: str, limit: int | None = None) -> Iterator[Item | Bad]:
    """Yield one dict per CSV row; rows with the wrong number of fields are quarantined."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        yield quarantine_record(source, "line 1", S.R_MALFORMED_CSV, f"{source}:line 1: bad header: {e}", "")
        return
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    n = 0
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield quarantine_record(source, f"line {start}", S.R_MALFORMED_CSV, f"{source}:line {start}: {e}", "")
            start = reader.line_num + 1
            continue
        loc = f"line {start}"
        start = reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            yield quarantine_record(source, loc, S.R_MALFORMED_CSV,
                                    f"{source}:{loc}: {len(row)} fields, the header has {len(header)}",
                                    ",".join(row))
            continue
        yield dict(zip(header, row)), source, loc
        n += 1
        if limit and n >= limit:
            return


def read_parquet(stream: io.BufferedIOBase, source: str, limit: int | None = None,
                 batch_rows: int = 4096, wanted: set[str] | None = None) -> Iterator[Item | Bad]:
    """Yield one dict per row; ``wanted`` (locations, "row N"): only those rows become dicts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(stream)
    rows = _line_numbers(wanted, "row")
    row = 0
    for batch in pf.iter_batches(batch_size=batch_rows):
        if rows is not None:
            if row > max(rows, default=-1):
                return
            take = sorted(r - row for r in rows if row <= r < row + batch.num_rows)
            for k, record in zip(take, batch.take(pa.array(take, pa.int64())).to_pylist()):
                yield record, source, f"row {row + k}"
            row += batch.num_rows
            continue
        for record in batch.to_pylist():
            yield record, source, f"row {row}"
            row += 1
            if limit and row >= limit:
                return


def read_hf_slice(dataset: Any, name: str, start: int, stop: int) -> Iterator[Item]:
    """Rows [start, stop) of a loaded ``datasets.Dataset``."""
    for i, record in enumerate(dataset.select(range(start, stop)), start=start):
        yield record, name, f"row {i}"


READERS = {"jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet}
SKIPS_UNWANTED = frozenset({"jsonl", "parquet"})  # readers that take ``wanted`` (csv rows may span lines)

EXTENSIONS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet", ".pq": "parquet",
}


def format_of(path: str) -> str | None:
    lower = path.lower()
    for suffix in (".gz", ".bz2", ".zst", ".xz"):
        if lower.endswith(suffix):
            lower = lower[: -len(suffix)]
    for ext, fmt in EXTENSIONS.items():
        if lower.endswith(ext):
            return fmt
    return None
