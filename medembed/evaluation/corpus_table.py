"""The corpus of a retrieval set embedded into a LanceDB table, one per (dataset, model revision), reused when complete.

One document is one row (``document_input(title, text)``, truncated by the model at its max length;
no chunking), embedded by the job's embed stage (``stages.embed.EmbedStage``) on a Ray actor pool and written
through the one write path (``index.writer.write_dataset``). The table's ``_SUCCESS.json``
(``runtime.artifacts``) records the model id, revision and a fingerprint of the corpus; a table whose
marker matches is reused as it is, anything else is dropped and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import ray

from medembed import schema as S
from medembed.config import EmbedConfig, ModelConfig, StoreConfig
from medembed.embedding.card import ModelCard
from medembed.embedding.chunking import whole_document_chunks
from medembed.evaluation.config import EvalStoreConfig
from medembed.evaluation.datasets import Corpus
from medembed.index.indexes import has_vector_index, maintain_table
from medembed.index.tables import table_name, table_names, table_uri
from medembed.index.writer import write_dataset
from medembed.runtime import artifacts
from medembed.runtime.storage import Storage

log = logging.getLogger(__name__)

KIND = "eval_corpus_table"


@dataclass(frozen=True)
class CorpusTable:
    db_uri: str
    name: str
    uri: str
    rows: int
    reused: bool
    marker: dict


def corpus_fingerprint(corpus: Corpus) -> str:
    """SHA-256 over (id, title, text) of every document, in order."""
    h = hashlib.sha256()
    for parts in zip(corpus.ids, corpus.titles, corpus.texts):
        for p in parts:
            h.update(p.encode("utf-8"))
            h.update(b"\x1f")
        h.update(b"\x1e")
    return h.hexdigest()


def document_key(card: ModelCard, model_cfg: ModelConfig) -> str:
    """What a document vector depends on besides its text: model id, revision, document prompt, max length, backend."""
    backend = getattr(model_cfg, "backend", "torch")
    return f"{card.model_id}@{card.revision}|{card.prompts.document}|{card.max_seq_length}|{backend}"


def corpus_table_name(dataset: str, card: ModelCard, model_cfg: ModelConfig) -> str:
    """``eval__<dataset>__<model slug>__<8 hex of document_key>``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset)
    return table_name("eval", safe, card.slug, key=document_key(card, model_cfg))


def corpus_rows(corpus: Corpus) -> pa.Table:
    """One chunk row per document (chunk id = doc id); ``n_tokens`` is left to the embedder to count."""
    return whole_document_chunks(corpus.ids, corpus.ids, corpus.titles, corpus.texts)


def _index_cfg(store: EvalStoreConfig, name: str) -> StoreConfig:
    """The index settings of a corpus table: no full-text index, the vector index past ``store.ann_min_rows``."""
    return StoreConfig(uri=store.uri, table=name, fts=False, ann_min_rows=store.ann_min_rows, compact=True)


def ensure_corpus_table(dataset: str, corpus: Corpus, card: ModelCard, model_cfg: ModelConfig,
                        embed: EmbedConfig, store: EvalStoreConfig, storage: Storage, run_id: str,
                        embed_rows: Callable[[pa.Table], ray.data.Dataset] | None = None) -> CorpusTable:
    """The complete corpus table of ``dataset`` for ``card``: reused when its marker matches, else (re)built with
    ``embed_rows`` (the job's embed stage, ``stages.embed.EmbedStage.over_table``: chunk rows -> embedded rows)."""
    if not len(corpus):
        raise ValueError(f"{dataset}: the corpus is empty")
    name = corpus_table_name(dataset, card, model_cfg)
    uri = table_uri(store.uri, name)
    expect = {"model_id": card.model_id, "revision": card.revision, "document_key": document_key(card, model_cfg),
              "corpus": corpus_fingerprint(corpus), "rows": len(corpus)}
    marker = artifacts.read_marker(uri, storage)
    if marker is not None and all(marker.get(k) == v for k, v in expect.items()):
        ds = storage.lance_dataset(uri)
        if ds is not None and ds.count_rows() == len(corpus):
            log.info("%s: reusing corpus table %s (%d rows, model %s)", dataset, uri, len(corpus), card.model_id)
            if len(corpus) >= max(store.ann_min_rows, 256) and not has_vector_index(storage.lancedb_connect(store.uri).open_table(name)):
                # built under a higher store.ann_min_rows: index it now, or `retrieval: ann` would scan every row
                index = maintain_table(store.uri, name, _index_cfg(store, name), storage)
                log.info("%s: built the vector index of the reused table: %s", dataset, index.get("ann_index"))
            return CorpusTable(store.uri, name, uri, len(corpus), True, marker)
    if name in table_names(storage.lancedb_connect(store.uri)):
        log.info("%s: dropping incomplete or stale corpus table %s", dataset, uri)
        artifacts.clear_marker(uri, storage)
        storage.lancedb_connect(store.uri).drop_table(name)

    if embed_rows is None:
        raise ValueError(f"{dataset}: building corpus table {name} needs embed_rows (the job's embed stage)")
    embedded = embed_rows(corpus_rows(corpus))
    schema = S.table_schema(card.dim, card.model_id, card.revision, card.backend, card.precision)
    result = write_dataset(embedded, uri, schema, storage=storage, commit_every=store.commit_every, block_mib=embed.block_mib,
                           progress=f"{dataset} documents embedded")
    if result.stats.rows != len(corpus):
        raise RuntimeError(f"{dataset}: wrote {result.stats.rows} rows for {len(corpus)} documents into {uri}")
    index = maintain_table(store.uri, name, _index_cfg(store, name), storage)
    summary = {**expect, "dataset": dataset, "version": storage.lance_dataset(uri).version,
               "ann_index": index.get("ann_index"), "embed_s": round(result.elapsed_s, 3)}
    artifacts.mark_complete(uri, KIND, run_id, summary, storage)
    log.info("%s: embedded %d documents into %s (%.1f s)", dataset, len(corpus), uri, result.elapsed_s)
    return CorpusTable(store.uri, name, uri, len(corpus), False, artifacts.read_marker(uri, storage) or summary)
