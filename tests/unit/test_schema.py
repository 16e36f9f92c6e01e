from __future__ import annotations

from medembed import schema as S


def test_chunk_id_and_hash_are_deterministic():
    assert S.chunk_id("PMC1-1", 3) == "PMC1-1#3"
    assert S.content_hash("t", "x") == S.content_hash("t", "x")
    assert S.content_hash("t", "x") != S.content_hash("t", "y")
    assert S.content_hash("ab", "c") != S.content_hash("a", "bc")  # parts are delimited


def test_table_schema_carries_model_metadata():
    sch = S.table_schema(384, "m", "r1")
    assert sch.field(S.VECTOR).type.list_size == 384
    assert sch.metadata[S.META_MODEL_ID.encode()] == b"m"
    assert sch.metadata[S.META_DIM.encode()] == b"384"


