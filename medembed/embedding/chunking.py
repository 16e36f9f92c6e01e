"""Token-aware chunking with the model's own tokenizer, as pure batch functions.

A document's text is cut into windows of at most ``max_tokens`` tokens (title and prompt
included) that overlap by ``overlap_tokens``; cuts fall on token boundaries and keep the
original characters. ``chunk_id`` = document id + chunk index; ``content_hash`` covers what is
embedded (title + chunk text). ``doc_hash`` (``add_doc_hashes``, before chunking) covers the whole
document and the parameters here, so a re-run recognises an unchanged document without tokenizing it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from medembed import schema as S

if TYPE_CHECKING:
    from medembed.config import EmbedJobConfig
    from medembed.embedding.card import ModelCard

# [CLS]/[SEP] or <s>/</s>: the tokenizer adds two special tokens around every input
SPECIAL_TOKENS = 2


@dataclass(frozen=True)
class ChunkParams:
    tokenizer_path: str
    max_tokens: int  # total tokens the model sees per chunk (its max_seq_length)
    overlap_tokens: int
    prompt_tokens: int = 0  # document prompt length, counted against the budget
    tokenizer_id: str = ""  # the model (id@revision) whose tokenizer cuts: part of every document hash

    @property
    def key(self) -> str:
        """What the chunks of a document depend on besides the document (hashed into ``doc_hash``)."""
        return (f"chunker={CHUNKER_VERSION};tokenizer={self.tokenizer_id};max={self.max_tokens};"
                f"overlap={self.overlap_tokens};prompt={self.prompt_tokens};special={SPECIAL_TOKENS}")


# documents this process has passed to the tokenizer (chunk_batch), for tests and benchmarks
TOKENIZED = {"documents": 0, "calls": 0}

# bump when ``chunk_batch`` cuts differently: every stored document then counts as changed once
CHUNKER_VERSION = "1"


def document_input(title: str, text: str) -> str:
    """The string that is embedded for a chunk: title line, then the chunk text."""
    return f"{title}\n{text}" if title else text


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, use_fast=True)


def chunk_params(cfg: EmbedJobConfig, model: ModelCard) -> ChunkParams:
    """The chunking parameters of a job: ``chunking.max_tokens`` capped at the model's max length, the
    document prompt's tokens counted against it, the model's tokenizer."""
    seq = model.max_seq_length
    max_tokens = min(cfg.chunking.max_tokens or seq, seq)
    prompt_tokens = 0
    if model.prompts.document:
        prompt_tokens = len(load_tokenizer(model.path)(model.prompts.document, add_special_tokens=False)["input_ids"])
    return ChunkParams(model.path, max_tokens, cfg.chunking.overlap_tokens, prompt_tokens,
                       tokenizer_id=f"{model.model_id}@{model.revision}")


def add_doc_hashes(docs: pa.Table, params: ChunkParams) -> pa.Table:
    """Documents (``schema.DOC_SCHEMA`` columns) -> the same with ``doc_hash``; reads the text, never tokenizes."""
    key = params.key
    cols = [docs.column(c).to_pylist() for c in (S.DOC_ID, S.TITLE, S.TEXT, S.METADATA)]
    hashes = [S.doc_hash(d, t or "", x, m or "", key) for d, t, x, m in zip(*cols)]
    if S.DOC_HASH in docs.column_names:
        docs = docs.drop_columns([S.DOC_HASH])
    return docs.append_column(S.DOC_HASH, pa.array(hashes, pa.string()))


def split_tokens(n_tokens: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) token windows covering ``n_tokens`` with the given overlap."""
    if n_tokens <= window:
        return [(0, n_tokens)]
    stride = max(1, window - overlap)
    spans = []
    start = 0
    while True:
        end = min(start + window, n_tokens)
        spans.append((start, end))
        if end >= n_tokens:
            return spans
        start += stride


def chunk_batch(batch: pa.Table | dict[str, Any], params: ChunkParams) -> pa.Table:
    """Ray Data UDF: documents -> chunks (columns ``schema.CHUNK_COLUMNS``); each chunk carries its document's
    ``doc_hash`` (taken from the input when ``add_doc_hashes`` ran before, else computed here)."""
    if not isinstance(batch, pa.Table):
        batch = pa.table({k: list(v) for k, v in batch.items()})
    if S.DOC_HASH not in batch.column_names:
        batch = add_doc_hashes(batch, params)
    cols = batch.to_pydict()
    tok = load_tokenizer(params.tokenizer_path)
    TOKENIZED["documents"] += batch.num_rows
    TOKENIZED["calls"] += 1
    titles = [t or "" for t in cols[S.TITLE]]
    texts = cols[S.TEXT]
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False,
              return_token_type_ids=False, verbose=False)
    title_lens = [len(ids) for ids in tok(titles, add_special_tokens=False)["input_ids"]] if any(titles) else [0] * len(titles)
    out: dict[str, list[Any]] = {c: [] for c in S.CHUNK_COLUMNS}
    for i, doc_id in enumerate(cols[S.DOC_ID]):
        offsets = enc["offset_mapping"][i]
        title = titles[i]
        overhead = SPECIAL_TOKENS + params.prompt_tokens
        # titles longer than a quarter of the window are cut so every chunk keeps real text
        title_budget = params.max_tokens // 4
        if title and title_lens[i] + 1 > title_budget:
            t_off = tok(title, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            title = title[: t_off[max(0, title_budget - 2)][1]]
            title_tokens = title_budget
        else:
            title_tokens = title_lens[i] + 1 if title else 0  # +1 for the newline joining title and text
        window = max(8, params.max_tokens - overhead - title_tokens)
        overlap = min(params.overlap_tokens, window // 2)
        spans = split_tokens(len(offsets), window, overlap)
        for k, (a, b) in enumerate(spans):
            chunk_text = texts[i][offsets[a][0]: offsets[b - 1][1]] if offsets else texts[i]
            out[S.CHUNK_ID].append(S.chunk_id(doc_id, k))
            out[S.DOC_ID].append(doc_id)
            out[S.CHUNK_INDEX].append(k)
            out[S.TITLE].append(title)
            out[S.TEXT].append(chunk_text)
            out[S.METADATA].append(cols[S.METADATA][i])
            out[S.CONTENT_HASH].append(S.content_hash(title, chunk_text))
            out[S.N_TOKENS].append(min(params.max_tokens, overhead + title_tokens + (b - a)))
            out[S.DOC_HASH].append(cols[S.DOC_HASH][i])
            out[S.DOC_CHUNKS].append(len(spans))
    return pa.table(out, schema=S.CHUNK_SCHEMA)


def whole_document_chunks(chunk_ids: Sequence[str], doc_ids: Sequence[str], titles: Sequence[str],
                          texts: Sequence[str]) -> pa.Table:
    """One chunk row per whole document (``schema.chunk_schema(doc_hash=False)``), not tokenized here: the
    model truncates at its max length and the embedder counts ``n_tokens`` with its tokenizer."""
    n = len(chunk_ids)
    return pa.table({
        S.CHUNK_ID: chunk_ids,
        S.DOC_ID: doc_ids,
        S.CHUNK_INDEX: [0] * n,
        S.TITLE: titles,
        S.TEXT: texts,
        S.METADATA: [None] * n,
        S.CONTENT_HASH: [S.content_hash(t, x) for t, x in zip(titles, texts)],
        S.N_TOKENS: [None] * n,
    }, schema=S.chunk_schema(doc_hash=False))
