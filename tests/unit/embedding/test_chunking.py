from __future__ import annotations

import pyarrow as pa
import pytest

from medembed import schema as S
from medembed.embedding.batching import plan_batches
from medembed.embedding.chunking import ChunkParams, chunk_batch, document_input, load_tokenizer, split_tokens


def test_split_tokens_windows_overlap_and_cover():
    assert split_tokens(5, 10, 2) == [(0, 5)]
    spans = split_tokens(25, 10, 3)
    assert spans == [(0, 10), (7, 17), (14, 24), (21, 25)]
    assert all(b - a <= 10 for a, b in spans)


def _docs(texts, titles=None):
    n = len(texts)
    return pa.table({S.DOC_ID: [f"d{i}" for i in range(n)], S.TITLE: titles or [""] * n, S.TEXT: texts,
                     S.METADATA: ["{}"] * n, S.SOURCE: ["s"] * n})


@pytest.mark.parametrize("max_tokens,overlap", [(32, 8), (64, 0), (256, 32)])
def test_chunks_fit_the_model_window(bundled_model_path, max_tokens, overlap):
    tok = load_tokenizer(bundled_model_path)
    long = " ".join(f"The patient received {i} mg of furosemide for edema on day {i}." for i in range(60))
    title = "Heart failure follow-up"
    out = chunk_batch(_docs([long, "short note"], [title, ""]), ChunkParams(bundled_model_path, max_tokens, overlap))
    rows = out.to_pylist()
    long_rows = [r for r in rows if r[S.DOC_ID] == "d0"]
    assert len(long_rows) > 1
    assert [r[S.CHUNK_INDEX] for r in long_rows] == list(range(len(long_rows)))
    assert [r[S.CHUNK_ID] for r in long_rows] == [f"d0#{i}" for i in range(len(long_rows))]
    for r in rows:
        ids = tok(document_input(r[S.TITLE], r[S.TEXT]))["input_ids"]  # with special tokens
        assert len(ids) <= max_tokens
        assert r[S.N_TOKENS] >= len(ids) - 1  # recorded length matches what the model sees
        assert r[S.CONTENT_HASH] == S.content_hash(r[S.TITLE], r[S.TEXT])
        assert r[S.TEXT] in (long if r[S.DOC_ID] == "d0" else "short note")
    # consecutive chunks overlap and together cover the document
    assert long_rows[0][S.TEXT].startswith("The patient received 0 mg")
    assert long_rows[-1][S.TEXT].endswith("on day 59.")
    if overlap:
        assert long_rows[1][S.TEXT][:20] in long_rows[0][S.TEXT]
    assert [r[S.TEXT] for r in rows if r[S.DOC_ID] == "d1"] == ["short note"]


def test_chunking_is_deterministic(bundled_model_path):
    docs = _docs(["alpha beta gamma " * 200])
    p = ChunkParams(bundled_model_path, 64, 16)
    assert chunk_batch(docs, p).equals(chunk_batch(docs, p))


def test_plan_batches_respects_token_budget():
    lengths = [10, 200, 50, 200, 5, 120]
    batches = plan_batches(lengths, token_budget=400)
    seen = sorted(int(i) for b in batches for i in b)
    assert seen == list(range(len(lengths)))
    for b in batches:
        assert max(lengths[i] for i in b) * len(b) <= 400 or len(b) == 1
    # longest first, similar lengths together
    assert set(batches[0].tolist()) == {1, 3}
