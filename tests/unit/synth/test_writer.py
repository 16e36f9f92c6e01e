from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from medembed.runtime.storage import DEFAULT_STORAGE
from medembed.synth import columns as C
from medembed.synth.generate import _merge_counts, _ParquetSink, summarize


def _t(start: int, n: int) -> pa.Table:
    return pa.table({"a": pa.array(range(start, start + n), pa.int64())})


def test_sink_writes_row_groups_and_rotates_files(tmp_path):
    sink = _ParquetSink(str(tmp_path / "out"), pa.schema([("a", pa.int64())]), DEFAULT_STORAGE, rows_per_group=10,
                        rows_per_file=25)
    start = 0
    for n in (3, 0, 9, 7, 12, 5, 1):
        sink.add(_t(start, n))
        start += n
    sink.close()
    files = sorted((tmp_path / "out").glob("*.parquet"))
    assert [f.name for f in files] == ["part-00000.parquet", "part-00001.parquet"]
    rows = [v for f in files for v in pq.read_table(f)["a"].to_pylist()]
    assert rows == list(range(start))  # every row once, in order
    assert pq.ParquetFile(files[0]).metadata.num_rows >= 25


def test_sink_without_rows_creates_nothing(tmp_path):
    sink = _ParquetSink(str(tmp_path / "none"), pa.schema([("a", pa.int64())]), DEFAULT_STORAGE)
    sink.add(_t(0, 0))
    sink.close()
    assert not (tmp_path / "none").exists()


def test_counts_merge_like_one_summary():
    rows = [{C.NOTE_ID: f"n{i}", C.GENERATOR_KEY: "g", C.STATUS: [C.S_OK, C.S_FAILED, C.S_SKIPPED][i % 3],
             C.REASON: C.F_TIMEOUT if i % 3 == 1 else None, C.N_PAIRS: 2 if i % 3 == 0 else 0,
             C.ATTEMPTS: 1 + i % 2, C.DROPPED: f'{{"{C.D_DUPLICATE}": 1}}' if i % 4 == 0 else None, C.RUN_ID: "r"}
            for i in range(10)]
    table = pa.Table.from_pylist(rows, schema=C.RESULT_SCHEMA)
    merged = None
    for lo, hi in ((0, 3), (3, 4), (4, 10)):
        merged = _merge_counts(merged, summarize(table.slice(lo, hi - lo)))
    assert merged == summarize(table)
