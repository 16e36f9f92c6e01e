from medembed.index.sql import in_filter, sql_literal


def test_string_literals_double_quotes_like_lancedb():
    from lancedb.util import value_to_sql

    for v in ["a", "it's", "''", "", "x'); DROP"]:
        assert sql_literal(v) == value_to_sql(v)
    assert sql_literal(None) == "NULL" and sql_literal(3) == "3" and sql_literal(True) == "TRUE"


def test_in_filter():
    assert in_filter("doc_id", ["a", "b'c"]) == "doc_id IN ('a', 'b''c')"
