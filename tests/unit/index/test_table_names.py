"""One function names every kind of table; the names are the ones tables were written under before."""

import hashlib

from medembed.index.tables import table_name


def test_every_kind_keeps_its_name():
    slug = "all_minilm_l6_v2"
    assert table_name("corpus", slug) == "corpus__all_minilm_l6_v2"  # embed, reembed
    assert table_name("corpus", slug, configured="mine") == "mine"
    assert table_name("corpus", slug, configured="") == "corpus__all_minilm_l6_v2"
    key = "sentence-transformers/all-MiniLM-L6-v2@r1"
    assert table_name("corpus", slug, key=key) == f"corpus__{slug}__{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    assert table_name("mining_candidates", slug) == "mining_candidates__all_minilm_l6_v2"
    assert table_name("eval", "nfcorpus", slug, key="k").startswith("eval__nfcorpus__all_minilm_l6_v2__")
