"""Synthetic benchmark corpora recombined from the real PMC-Patients notes, at any size, deterministic by seed.

    python bench/corpus_gen.py --docs 130000 --out bench/_work/c1m --seed 0               # JSONL shards
    python bench/corpus_gen.py --chunks 1000000 --max-tokens 128 --out bench/_work/c1m     # docs sized from chunks
    python bench/corpus_gen.py --docs 130000 --out bench/_work/c1m_night1 --seed 0 \\
        --delta-seed 1 --changed 0.001 --added 0.0005 --deleted 0.0005                       # a "nightly" version

Source: ``../shared/data/pmc_patients/notes.jsonl`` (1,000 real notes; read, never copied into the repo). The
notes are split into sentences; document ``i`` takes the title of a random real note and random real sentences
until it reaches the character length of another random real note (times ``--length-scale``, +-25%). So token
lengths, vocabulary and chunks per document follow the real notes (~700 tokens; ~9 chunks of 128 tokens).
Rows: ``{"id", "title", "text"}`` (the embed job's default field names), ids ``g<seed>-<i:010d>``.

Deterministic: document ``i`` depends only on ``(seed, i)`` (one NumPy generator per block of 1024 documents),
so the same arguments give byte-identical files, and a delta version re-derives every base document.
Streaming: one block in memory at a time, written to shards of ``--shard-docs`` documents (JSONL or Parquet).

A delta version (``--delta-seed``) is the full corpus as it looks the next night: each base document is kept,
changed (one sentence replaced by another real sentence, one appended) or deleted with the given fractions
(decided per document from ``(seed, delta_seed, i)``), and ``round(docs * added)`` new documents follow
(``g<seed>-<docs + j>``). ``delta_ids.json`` lists the changed, deleted and added ids.
Every output folder gets ``corpus.json`` (arguments, counts, files).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NOTES = (ROOT / ".." / "shared" / "data" / "pmc_patients" / "notes.jsonl").resolve()
BLOCK = 1024
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


@dataclass(frozen=True)
class Pool:
    sentences: list[str]
    sent_chars: np.ndarray  # characters per sentence, +1 for the joining space
    titles: list[str]
    note_chars: np.ndarray  # characters per real note: the document length distribution


def load_pool(notes: Path = NOTES) -> Pool:
    """Sentences, titles and note lengths of the real notes."""
    if not notes.is_file():
        raise FileNotFoundError(f"{notes}: the PMC-Patients notes (see ../shared/data/README.md) are needed")
    sentences: list[str] = []
    titles: list[str] = []
    lengths: list[int] = []
    with notes.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text = " ".join(str(row["patient"]).split())
            except (ValueError, KeyError) as e:
                raise ValueError(f"{notes} line {n}: not a note with a 'patient' field ({e})") from e
            titles.append(" ".join(str(row.get("title") or "").split()))
            lengths.append(len(text))
            sentences.extend(s for s in _SENT.split(text) if len(s) >= 3)
    return Pool(sentences, np.array([len(s) + 1 for s in sentences], np.int64), titles, np.array(lengths, np.int64))


def doc_id(seed: int, i: int) -> str:
    return f"g{seed}-{i:010d}"


def _block_docs(pool: Pool, seed: int, block: int, first: int, stop: int, length_scale: float
                ) -> tuple[list[str], list[str], list[np.ndarray]]:
    """Titles, texts and sentence indices of documents [first, stop) of ``block`` (all of the block's draws are
    made whatever the range, so a document never depends on where a range starts)."""
    rng = np.random.default_rng([seed, block])
    t_idx = rng.integers(0, len(pool.titles), BLOCK)
    target = pool.note_chars[rng.integers(0, len(pool.note_chars), BLOCK)] * length_scale * rng.uniform(0.75, 1.25, BLOCK)
    k = int(math.ceil(target.max() / max(1.0, pool.sent_chars.mean()) * 2.0)) + 8
    sidx = rng.integers(0, len(pool.sentences), (BLOCK, k))
    csum = np.cumsum(pool.sent_chars[sidx], axis=1)
    n_sent = np.minimum((csum < target[:, None]).sum(axis=1) + 1, k)
    titles, texts, picks = [], [], []
    for j in range(first - block * BLOCK, stop - block * BLOCK):
        row = sidx[j, : n_sent[j]]
        titles.append(pool.titles[t_idx[j]])
        texts.append(" ".join([pool.sentences[s] for s in row]))
        picks.append(row)
    return titles, texts, picks


def iter_docs(pool: Pool, docs: int, seed: int = 0, length_scale: float = 1.0, start: int = 0
              ) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """Blocks of (ids, titles, texts) of documents [start, start + docs)."""
    i, stop = start, start + docs
    while i < stop:
        block = i // BLOCK
        end = min(stop, (block + 1) * BLOCK)
        titles, texts, _ = _block_docs(pool, seed, block, i, end, length_scale)
        yield [doc_id(seed, d) for d in range(i, end)], titles, texts
        i = end


def _changed_text(pool: Pool, text_rng: np.random.Generator, picks: np.ndarray) -> str:
    row = picks.copy()
    row[text_rng.integers(0, len(row))] = text_rng.integers(0, len(pool.sentences))
    row = np.append(row, text_rng.integers(0, len(pool.sentences)))
    return " ".join(pool.sentences[s] for s in row)


def iter_delta_docs(pool: Pool, docs: int, seed: int, delta_seed: int, changed: float, added: float, deleted: float,
                    length_scale: float, ids_out: dict[str, list[str]]) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """The base corpus with changed/deleted documents, then the added ones; ids recorded in ``ids_out``."""
    if changed < 0 or deleted < 0 or added < 0 or changed + deleted > 1:
        raise ValueError("--changed/--deleted/--added must be >= 0 and changed + deleted <= 1")
    i = 0
    while i < docs:
        block = i // BLOCK
        end = min(docs, (block + 1) * BLOCK)
        titles, texts, picks = _block_docs(pool, seed, block, i, end, length_scale)
        drng = np.random.default_rng([seed, delta_seed, block])
        u = drng.random(BLOCK)[i - block * BLOCK: end - block * BLOCK]
        ids, out_t, out_x = [], [], []
        for j, d in enumerate(range(i, end)):
            if u[j] < changed:
                texts[j] = _changed_text(pool, np.random.default_rng([seed, delta_seed, d, 1]), picks[j])
                ids_out["changed"].append(doc_id(seed, d))
            elif u[j] < changed + deleted:
                ids_out["deleted"].append(doc_id(seed, d))
                continue
            ids.append(doc_id(seed, d))
            out_t.append(titles[j])
            out_x.append(texts[j])
        yield ids, out_t, out_x
        i = end
    n_added = round(docs * added)
    for ids, t, x in iter_docs(pool, n_added, seed, length_scale, start=docs):
        ids_out["added"].extend(ids)
        yield ids, t, x


class ShardWriter:
    """Documents into ``part-NNNNN.<fmt>`` files of at most ``shard_docs`` documents each."""

    def __init__(self, out: Path, fmt: str, shard_docs: int):
        if fmt not in ("jsonl", "parquet"):
            raise ValueError(f"--format {fmt!r}: jsonl or parquet")
        self.out, self.fmt, self.shard_docs = out, fmt, shard_docs
        self.files: list[str] = []
        self._f = None
        self._n = 0
        self.docs = self.chars = 0

    def _open(self):
        path = self.out / f"part-{len(self.files):05d}.{self.fmt}"
        self.files.append(path.name)
        if self.fmt == "jsonl":
            self._f = path.open("w", encoding="utf-8")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            self._f = pq.ParquetWriter(path, pa.schema([("id", pa.string()), ("title", pa.string()),
                                                        ("text", pa.string())]))
        self._n = 0

    def write(self, ids: list[str], titles: list[str], texts: list[str]) -> None:
        pos = 0
        while pos < len(ids):
            if self._f is None or self._n >= self.shard_docs:
                self.close()
                self._open()
            take = min(len(ids) - pos, self.shard_docs - self._n)
            sl = slice(pos, pos + take)
            if self.fmt == "jsonl":
                dumps = json.dumps
                self._f.write("".join(dumps({"id": a, "title": b, "text": c}, ensure_ascii=False) + "\n"
                                      for a, b, c in zip(ids[sl], titles[sl], texts[sl])))
            else:
                import pyarrow as pa

                self._f.write_table(pa.table({"id": ids[sl], "title": titles[sl], "text": texts[sl]}))
            self._n += take
            self.docs += take
            self.chars += sum(len(x) for x in texts[sl])
            pos += take

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def estimate_chunks_per_doc(pool: Pool, max_tokens: int, overlap: int, seed: int = 0, length_scale: float = 1.0,
                            sample: int = 2048) -> dict[str, float]:
    """Chunks and tokens per document under the embed job's own chunker (bundled MiniLM tokenizer), measured on
    the first ``sample`` documents of the corpus."""
    sys.path.insert(0, str(ROOT))
    from medembed.config import ModelConfig
    from medembed.embedding.card import locate_model
    from medembed.embedding.chunking import ChunkParams, chunk_batch

    path = locate_model(ModelConfig(name="bundled:all-MiniLM-L6-v2"))[1]
    params = ChunkParams(path, max_tokens, overlap, 0)
    docs = chunks = tokens = 0
    for ids, titles, texts in iter_docs(pool, sample, seed, length_scale):
        t = chunk_batch({"doc_id": ids, "title": titles, "text": texts, "metadata": [None] * len(ids)}, params)
        docs += len(ids)
        chunks += t.num_rows
        tokens += sum(t.column("n_tokens").to_pylist())
    return {"chunks_per_doc": chunks / docs, "tokens_per_chunk": tokens / chunks, "sample_docs": docs}


def generate(out: str | Path, docs: int | None = None, seed: int = 0, fmt: str = "jsonl", *, chunks: int | None = None,
             max_tokens: int = 128, overlap: int = 32, length_scale: float = 1.0, shard_docs: int = 50_000,
             delta_seed: int | None = None, changed: float = 0.001, added: float = 0.0005, deleted: float = 0.0005,
             notes: Path = NOTES) -> dict:
    """Write a corpus (or, with ``delta_seed``, its nightly version) to ``out``; returns what ``corpus.json`` holds.

    Give ``docs``, or ``chunks`` (documents are then sized from the measured chunks per document at
    ``max_tokens``/``overlap``)."""
    t0 = time.perf_counter()
    pool = load_pool(notes)
    est = None
    if docs is None:
        if not chunks:
            raise ValueError("give docs or chunks")
        est = estimate_chunks_per_doc(pool, max_tokens, overlap, seed, length_scale)
        docs = int(math.ceil(chunks / est["chunks_per_doc"]))
    if docs <= 0 or shard_docs <= 0:
        raise ValueError("docs and shard_docs must be positive")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("part-*.jsonl")) + list(out.glob("part-*.parquet")):
        old.unlink()
    w = ShardWriter(out, fmt, shard_docs)
    ids_out: dict[str, list[str]] = {"changed": [], "deleted": [], "added": []}
    blocks = (iter_docs(pool, docs, seed, length_scale) if delta_seed is None else
              iter_delta_docs(pool, docs, seed, delta_seed, changed, added, deleted, length_scale, ids_out))
    try:
        for ids, titles, texts in blocks:
            w.write(ids, titles, texts)
    finally:
        w.close()
    info = {"seed": seed, "base_docs": docs, "docs": w.docs, "chars": w.chars, "format": fmt, "files": w.files,
            "length_scale": length_scale, "source": str(notes), "sentences_in_pool": len(pool.sentences),
            "seconds": round(time.perf_counter() - t0, 2)}
    if est:
        info["estimate"] = {**est, "max_tokens": max_tokens, "overlap": overlap, "chunks_target": chunks,
                            "chunks_estimated": round(est["chunks_per_doc"] * docs)}
    if delta_seed is not None:
        info["delta"] = {"delta_seed": delta_seed, "fractions": {"changed": changed, "added": added, "deleted": deleted},
                         **{k: len(v) for k, v in ids_out.items()}}
        (out / "delta_ids.json").write_text(json.dumps(ids_out))
    (out / "corpus.json").write_text(json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = ap.add_mutually_exclusive_group(required=True)
    size.add_argument("--docs", type=int, help="documents in the (base) corpus")
    size.add_argument("--chunks", type=int, help="size the corpus to about this many chunks at --max-tokens")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", default="jsonl", choices=["jsonl", "parquet"])
    ap.add_argument("--max-tokens", type=int, default=128, help="chunk size for --chunks (the job's chunking.max_tokens)")
    ap.add_argument("--overlap", type=int, default=32, help="chunk overlap for --chunks (chunking.overlap_tokens)")
    ap.add_argument("--length-scale", type=float, default=1.0, help="document length relative to the real notes")
    ap.add_argument("--shard-docs", type=int, default=50_000)
    ap.add_argument("--delta-seed", type=int, help="write the nightly version of the corpus (base: --docs, --seed)")
    ap.add_argument("--changed", type=float, default=0.001)
    ap.add_argument("--added", type=float, default=0.0005)
    ap.add_argument("--deleted", type=float, default=0.0005)
    a = ap.parse_args(argv)
    info = generate(a.out, a.docs, a.seed, a.format, chunks=a.chunks, max_tokens=a.max_tokens, overlap=a.overlap,
                    length_scale=a.length_scale, shard_docs=a.shard_docs, delta_seed=a.delta_seed, changed=a.changed,
                    added=a.added, deleted=a.deleted)
    print(json.dumps({k: v for k, v in info.items() if k != "files"} | {"files": len(info["files"])}, indent=2))


if __name__ == "__main__":
    main()
