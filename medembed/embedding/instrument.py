"""Benchmark instrument: a model-free encoder for measuring everything around the model.

``model.name: instrument:hash`` (or ``instrument:hash-<dim>``, default 384) gives every text a deterministic,
L2-normalized float32 vector derived from a 64-bit hash of the string that is embedded (title line + chunk
text, the content ``content_hash`` covers), so equal content gets equal vectors, as with a real model. It runs
through the real jobs (same card, actors, writer, commits, indexes) and costs next to nothing, so the rest of
the data path can be measured at 10M chunks on a CPU machine. Chunking uses the bundled all-MiniLM-L6-v2
tokenizer, so chunk token lengths are real.

It is a benchmark instrument, never a model:

- refused unless the environment sets ``MEDEMBED_ALLOW_INSTRUMENT=1`` (checked where a config becomes a model
  card, :func:`instrument_card`);
- refused by every ``*_cluster`` preset even with that variable (:func:`refuse_in_preset`, one of the
  runner's ``config_checks`` that ``config.load_config`` runs on a job's config file and overrides);
- a table it wrote says so: backend ``instrument`` and ``medembed.instrument=true`` in its schema metadata.

No product code path depends on this module: the card and encoder resolution each have one branch for it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medembed.runtime.storage import DEFAULT_STORAGE, Storage

log = logging.getLogger(__name__)

PREFIX = "instrument:"
ENV = "MEDEMBED_ALLOW_INSTRUMENT"
BACKEND = "instrument"
REVISION = "instrument-hash-v1"
DEFAULT_DIM = 384
TOKENIZER_MODEL = "bundled:all-MiniLM-L6-v2"  # chunking and token counts use this model's tokenizer
MAX_SEQ_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length: chunks are cut as for the bundled model
_NAME = re.compile(r"^instrument:hash(?:-(\d+))?$")


class InstrumentRefused(ValueError):
    """The benchmark instrument was asked for where it is not allowed."""


def is_instrument(name: str | None) -> bool:
    return bool(name) and str(name).strip().lower().startswith(PREFIX)


def parse_dim(name: str) -> int:
    m = _NAME.match(name.strip().lower())
    if not m:
        raise InstrumentRefused(f"model.name={name!r}: the benchmark instrument is spelled 'instrument:hash' or "
                                "'instrument:hash-<dim>' (e.g. instrument:hash-768)")
    dim = int(m.group(1) or DEFAULT_DIM)
    if not 2 <= dim <= 8192:
        raise InstrumentRefused(f"model.name={name!r}: dimension must be between 2 and 8192")
    return dim


def require_allowed(name: str) -> None:
    if os.environ.get(ENV) != "1":
        raise InstrumentRefused(
            f"model.name={name!r} is a benchmark instrument (hash vectors, no model), not an embedding model; "
            f"it is refused unless the environment sets {ENV}=1 (benchmarks only)")


def refuse_in_preset(data: Mapping[str, Any], preset: Path) -> None:
    """Refuse the instrument anywhere in a ``*_cluster`` preset (file contents plus overrides), whatever the env."""
    if not preset.stem.endswith("_cluster"):
        return
    for where, name in _model_names(data, ""):
        if is_instrument(name):
            raise InstrumentRefused(f"{preset}: {where}={name!r} is a benchmark instrument, refused in the "
                                    f"production preset {preset.stem!r} (even with {ENV}=1)")


def _model_names(data: Any, path: str):
    if not isinstance(data, Mapping):
        return
    for k, v in data.items():
        here = f"{path}.{k}" if path else str(k)
        if k == "model" and isinstance(v, Mapping) and "name" in v:
            yield f"{here}.name", v["name"]
        yield from _model_names(v, here)


def instrument_card(cfg: Any):
    """The model card of ``instrument:hash[-<dim>]`` (refused without ``MEDEMBED_ALLOW_INSTRUMENT=1``)."""
    from medembed.config import ModelConfig
    from medembed.embedding.card import ModelCard, Prompts, locate_model

    name = cfg.name.strip()
    require_allowed(name)
    dim = parse_dim(name)
    _, tok_path, _, tok_rev = locate_model(ModelConfig(name=TOKENIZER_MODEL))
    log.warning("model.name=%s: benchmark instrument (hash vectors from content, tokenizer of %s); the table "
                "will be marked medembed.instrument=true", name, TOKENIZER_MODEL)
    return ModelCard(source=name, path=tok_path, model_id=f"instrument:hash-{dim}", revision=f"{REVISION}+{tok_rev}",
                     dim=dim, max_seq_length=min(cfg.max_seq_length or MAX_SEQ_LENGTH, 512), prompts=Prompts(),
                     similarity="cosine", backend=BACKEND, precision="float32")


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def text_seeds(texts: Sequence[str]) -> np.ndarray:
    """A 64-bit seed per text: blake2b of its UTF-8 bytes."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little")
                        for t in texts), dtype=np.uint64, count=len(texts))


def hash_vectors(seeds: np.ndarray, dim: int) -> np.ndarray:
    """Unit float32 vectors, one per seed: splitmix64 of (seed, component) mapped to [-1, 1), L2-normalized."""
    with np.errstate(over="ignore"):
        z = seeds.astype(np.uint64)[:, None] + _GOLDEN * np.arange(1, dim + 1, dtype=np.uint64)[None, :]
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z ^= z >> np.uint64(31)
    v = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 / (1 << 24)) - np.float32(1.0)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), np.float32(1e-12))
    return v


class InstrumentEncoder:
    """Encoder protocol over hash vectors; ``count_tokens`` uses the real tokenizer (bundled MiniLM)."""

    def __init__(self, model_cfg: Any, embed_cfg: Any = None, storage: Storage = DEFAULT_STORAGE, card: Any = None):
        if card is None:  # built outside a job: resolve (and check) here
            card = instrument_card(model_cfg)
        elif card.backend != BACKEND:
            raise InstrumentRefused(f"model.name={model_cfg.name!r}: the instrument encoder needs an instrument "
                                    f"card, got backend {card.backend!r}")
        self.model = card
        self.dim = card.dim
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from medembed.embedding.chunking import load_tokenizer

            self._tokenizer = load_tokenizer(self.model.path)
        return self._tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.model.max_seq_length)["input_ids"]
        return [len(i) for i in ids]

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return hash_vectors(text_seeds(texts), self.dim)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_documents(self, texts: Sequence[str], lengths: Sequence[int] | None = None) -> np.ndarray:
        return self._encode(texts)
