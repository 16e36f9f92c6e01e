from __future__ import annotations

import io
import json

from medembed import schema as S
from medembed.config import InputConfig
from medembed.ingest.normalize import clean_text, normalize_records
from medembed.ingest.readers import format_of, read_csv, read_jsonl, read_parquet
from medembed.runtime.storage import DEFAULT_STORAGE


def split(items):
    good = [i for i in items if not isinstance(i, dict)]
    bad = [i for i in items if isinstance(i, dict)]
    return good, bad


def test_jsonl_bad_lines_are_quarantined_with_location():
    raw = (b"# header comment\n"
           b'{"id": "a", "text": "fine"}\n'
           b"\n"
           b'{"id": "b", "text": broken}\n'
           b'{"id": "c", "text": "bad \xff\xfe bytes"}\n'
           b'["not", "an", "object"]\n')
    good, bad = split(list(read_jsonl(io.BytesIO(raw), "f.jsonl")))
    assert [(r, loc) for r, _, loc in good] == [({"id": "a", "text": "fine"}, "line 2"),
                                                 (["not", "an", "object"], "line 6")]
    assert [(b[S.Q_REASON], b[S.Q_LOCATION]) for b in bad] == [
        (S.R_MALFORMED_JSON, "line 4"), (S.R_UNDECODABLE, "line 5")]
    assert "f.jsonl:line 4" in bad[0][S.Q_DETAIL]
    # the list is parsed fine and rejected by normalization
    items = [i for i in read_jsonl(io.BytesIO(b'["x"]\n'), "g.jsonl")]
    out = normalize_records(items, InputConfig())
    assert out.quarantine[0][S.Q_REASON] == S.R_NOT_AN_OBJECT


def test_csv_quoted_newlines_wrong_field_counts_and_bad_bytes():
    raw = (b'id,title,text\n'
           b'1,T1,"multi\nline text"\n'
           b'2,T2\n'
           b'3,T3,"ok"\n') + b'4,T4,"caf\xe9"\n'
    items = list(read_csv(io.BytesIO(raw), "f.csv"))
    good, bad = split(items)
    assert [(r["id"], loc) for r, _, loc in good] == [("1", "line 2"), ("3", "line 5"), ("4", "line 6")]
    assert [(b[S.Q_REASON], b[S.Q_LOCATION]) for b in bad] == [(S.R_MALFORMED_CSV, "line 4")]
    out = normalize_records(good, InputConfig())
    assert [d[S.DOC_ID] for d in out.docs] == ["1", "3"]
    assert out.quarantine[0][S.Q_REASON] == S.R_UNDECODABLE and out.quarantine[0][S.Q_LOCATION] == "line 6"
    assert "'text'" in out.quarantine[0][S.Q_DETAIL]


def test_parquet_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "x.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["x", None]}), p)
    with open(p, "rb") as f:
        good, bad = split(list(read_parquet(f, str(p))))
    assert [(r["id"], loc) for r, _, loc in good] == [("a", "row 0"), ("b", "row 1")]
    out = normalize_records(good, InputConfig())
    assert [d[S.DOC_ID] for d in out.docs] == ["a"]
    assert out.quarantine[0][S.Q_REASON] == S.R_MISSING_TEXT


def test_normalize_every_reason_and_field_mapping():
    cfg = InputConfig(id_field="uid", text_fields=["body", "extra"], title_field="t", metadata_fields=["pmid"],
                      max_chars=50)
    records = [
        {"uid": "1", "body": "  Some\r\ntext\x00 here ", "t": "Title", "pmid": 7},
        {"body": "no id"},
        {"uid": "", "body": "empty id"},
        {"uid": "3"},
        {"uid": "4", "body": "   ", "extra": ""},
        {"uid": "5", "body": "x" * 51},
        {"uid": "1", "body": "dup"},
        {"uid": 6, "body": "a", "extra": "b"},
    ]
    out = normalize_records([(r, "src", f"line {i + 1}") for i, r in enumerate(records)], cfg)
    assert [d[S.DOC_ID] for d in out.docs] == ["1", "6"]
    d0 = out.docs[0]
    assert d0[S.TEXT] == "Some\ntext here" and d0[S.TITLE] == "Title"
    assert json.loads(d0[S.METADATA]) == {"pmid": 7} and d0[S.SOURCE] == "src:line 1"
    assert out.docs[1][S.TEXT] == "a\n\nb"
    assert [(q[S.Q_LOCATION], q[S.Q_REASON]) for q in out.quarantine] == [
        ("line 2", S.R_MISSING_ID), ("line 3", S.R_MISSING_ID), ("line 4", S.R_MISSING_TEXT),
        ("line 5", S.R_EMPTY_TEXT), ("line 6", S.R_TOO_LONG), ("line 7", S.R_DUPLICATE_ID)]
    assert "already read at src:line 1" in out.quarantine[-1][S.Q_DETAIL]


def test_clean_text_and_formats():
    assert clean_text("a\t\tb\n\n\n\nc\u00a0 d") == "a b\n\nc d"
    assert format_of("x/y.JSONL") == "jsonl" and format_of("a.csv.gz") == "csv" and format_of("a.txt") is None
    assert format_of("a.parquet") == "parquet"


def test_compressed_files_are_read_by_extension(tmp_path):
    import gzip

    from medembed.ingest.sources import ReadTask
    from medembed.ingest.stage import _iter_items

    p = tmp_path / "notes.jsonl.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write('{"id": "z1", "text": "zipped note"}\nnot json\n')
    assert format_of(str(p)) == "jsonl"
    good, bad = split(list(_iter_items(ReadTask("jsonl", str(p)), InputConfig(), DEFAULT_STORAGE)))
    assert [(r["id"], loc) for r, _, loc in good] == [("z1", "line 1")]
    assert [(b[S.Q_REASON], b[S.Q_LOCATION]) for b in bad] == [(S.R_MALFORMED_JSON, "line 2")]


def test_second_read_parses_only_the_wanted_lines_and_rows(tmp_path):
    raw = b"".join(json.dumps({"id": f"n{i}", "text": f"t{i}"}).encode() + b"\n" for i in range(1, 8)) + b"{broken\n"
    items = list(read_jsonl(io.BytesIO(raw), "f.jsonl", wanted={"line 2", "line 5"}))
    assert [(r["id"], loc) for r, _, loc in items] == [("n2", "line 2"), ("n5", "line 5")]  # the bad line: unread
    assert list(read_jsonl(io.BytesIO(raw), "f.jsonl", wanted=set())) == []

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [f"p{i}" for i in range(10)], "text": ["x"] * 10}), tmp_path / "p.parquet")
    with open(tmp_path / "p.parquet", "rb") as f:
        got = list(read_parquet(f, "p.parquet", batch_rows=3, wanted={"row 0", "row 4", "row 9"}))
    assert [(r["id"], loc) for r, _, loc in got] == [("p0", "row 0"), ("p4", "row 4"), ("p9", "row 9")]


def test_read_plan_restrict_keeps_files_and_locations(tmp_path):
    from medembed.ingest.sources import ReadTask
    from medembed.ingest.stage import ReadPlan

    a, b, c = (str(tmp_path / f"{x}.jsonl") for x in "abc")
    plan = ReadPlan([ReadTask("jsonl", a), ReadTask("jsonl", b), ReadTask("csv", c)], InputConfig(), str(tmp_path),
                    registry="registry-handle")
    sub = plan.restrict([f"{b}:line 3", f"{c}:line 2", f"{b}:line 9"])
    assert [t.uri for t in sub.tasks] == [b, c] and sub.registry == "registry-handle"
    assert {i["uri"]: json.loads(i["wanted"]) for i in sub.items()} == {b: ["line 3", "line 9"], c: ["line 2"]}
    assert plan.restrict(None) is plan and plan.restrict([]).tasks == []
    assert all(i["wanted"] == "" for i in plan.items())
