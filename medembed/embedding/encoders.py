"""Encoders (protocol + registry) and the embedder stage used by Ray Data actor pools.

The embedder knows models, not tables: it turns chunk rows into rows with a normalized float32
``vector``, the ``model_id`` and ``embedded_at``. Inside each call rows are sorted by length and
cut into forward passes of at most ``token_budget`` padded tokens (length bucketing).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from medembed.config import EmbedConfig, ModelConfig
from medembed.embedding.batching import plan_batches
from medembed.embedding.card import ModelCard, resolve_card
from medembed.embedding.loading import load_sentence_transformer
from medembed.runtime.storage import DEFAULT_STORAGE, Storage

log = logging.getLogger(__name__)


@runtime_checkable
class Encoder(Protocol):
    """Asymmetric text encoder: queries and documents may get different prompts."""

    model: ModelCard
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str], lengths: Sequence[int] | None = None) -> np.ndarray: ...


ENCODERS: dict[str, Callable[..., Encoder]] = {}


def register_encoder(name: str) -> Callable[[Callable[..., Encoder]], Callable[..., Encoder]]:
    def deco(factory: Callable[..., Encoder]) -> Callable[..., Encoder]:
        ENCODERS[name] = factory
        return factory

    return deco


GPU_TOKEN_BUDGET = 16384
# On CPU, passes of many short rows run out of cache: 500 PMC-Patients queries (21 tokens) took 10.3 s in
# 16384-token passes and 6.1 s in 2048-token ones, 446 positives (86 tokens) 21.9 s and 16.4 s; full
# 256-token chunks take the same time either way (bundled MiniLM, 2 cores, 2026-11-29).
CPU_TOKEN_BUDGET = 2048


class BucketedEncoder:
    """Shared by the backends: rows sorted by length and cut into forward passes of at most
    ``embed.token_budget`` padded tokens; the query or document prompt of the model card applied."""

    model: ModelCard
    dim: int
    embed_cfg: EmbedConfig
    on_gpu: bool = False

    @property
    def token_budget(self) -> int:
        return self.embed_cfg.token_budget or (GPU_TOKEN_BUDGET if self.on_gpu else CPU_TOKEN_BUDGET)

    def _forward(self, texts: list[str], prompt: str) -> np.ndarray:
        """Normalized float32 vectors of one forward pass."""
        raise NotImplementedError

    def _encode(self, texts: Sequence[str], prompt: str, lengths: Sequence[int] | None) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if lengths is None:
            lengths = self.count_tokens([prompt + t for t in texts] if prompt else texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for idx in plan_batches(lengths, self.token_budget):
            out[idx] = self._forward([texts[i] for i in idx], prompt)
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model sees per text (special tokens included, truncated at the model's max length).

        Exact lengths sort forward passes tightly: 446 positives of 86 tokens on average took 16.9 s with
        these and 20.0 s with a characters/4 estimate (bundled MiniLM, 2 cores)."""
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.model.max_seq_length)["input_ids"]
        return [len(i) for i in ids]

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts), self.model.prompts.query, None)

    def encode_documents(self, texts: Sequence[str], lengths: Sequence[int] | None = None) -> np.ndarray:
        return self._encode(list(texts), self.model.prompts.document, lengths)


@register_encoder("torch")
@register_encoder("sentence-transformers")
class SentenceTransformerEncoder(BucketedEncoder):
    def __init__(self, model_cfg: ModelConfig, embed_cfg: EmbedConfig | None = None, storage: Storage = DEFAULT_STORAGE,
                 card: ModelCard | None = None):
        import torch

        self.embed_cfg = embed_cfg or EmbedConfig()
        threads = self.embed_cfg.torch_threads or os.cpu_count() or 1
        torch.set_num_threads(threads)
        self.model = card.on_this_node(model_cfg, storage) if card else resolve_card(model_cfg, storage)
        self.st = load_sentence_transformer(self.model, model_cfg)
        get_dim = getattr(self.st, "get_embedding_dimension", None) or self.st.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        if self.dim != self.model.dim:
            raise ValueError(f"model {self.model.model_id}: card says dim {self.model.dim}, loaded model gives {self.dim}")
        self.tokenizer = self.st.tokenizer
        self.on_gpu = self.st.device.type != "cpu"
        log.info("encoder %s (%s) dim=%d on %s, %d threads, %d tokens per pass", self.model.model_id,
                 self.model.revision, self.dim, self.st.device, threads, self.token_budget)

    def _forward(self, texts: list[str], prompt: str) -> np.ndarray:
        import torch

        with torch.inference_mode():
            vecs = self.st.encode(texts, prompt=prompt or None, batch_size=len(texts), normalize_embeddings=False,
                                  convert_to_tensor=True, show_progress_bar=False)
        # normalized in float32: normalized in bfloat16 (GPU default), norms were 0.9994 to 1.0025
        return torch.nn.functional.normalize(vecs.float(), dim=-1).cpu().numpy()


@register_encoder("onnx")
@register_encoder("onnx-int8")
class OnnxEncoder(BucketedEncoder):
    """ONNX Runtime on CPU over the model's one-time export (``onnx``: optimized fp32, ``onnx-int8``: dynamic int8).

    The exported graph holds the whole SentenceTransformer (transformer, pooling, dense layers), so
    vectors match torch's up to numerics; they are L2-normalized here like torch's.
    """

    def __init__(self, model_cfg: ModelConfig, embed_cfg: EmbedConfig | None = None, storage: Storage = DEFAULT_STORAGE,
                 card: ModelCard | None = None):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        from medembed.embedding.onnx_export import MODEL_FILE, ensure_export, export_info

        self.embed_cfg = embed_cfg or EmbedConfig()
        card = card.on_this_node(model_cfg, storage) if card else resolve_card(model_cfg, storage)
        self.model = dataclasses.replace(card, backend=model_cfg.backend) if card.backend != model_cfg.backend else card
        folder = ensure_export(self.model, model_cfg.cache_dir, model_cfg.backend)
        self.input_names = export_info(folder)["inputs"]
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        threads = self.embed_cfg.torch_threads or os.cpu_count() or 1
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / MODEL_FILE), opts, providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1] or self.model.dim)
        if self.dim != self.model.dim:
            raise ValueError(f"model {self.model.model_id}: card says dim {self.model.dim}, {folder} gives {self.dim}")
        log.info("encoder %s (%s) dim=%d on onnxruntime %s (%s), %d threads", self.model.model_id,
                 self.model.revision, self.dim, ort.__version__, model_cfg.backend, threads)

    def _forward(self, texts: list[str], prompt: str) -> np.ndarray:
        texts = [prompt + t for t in texts] if prompt else texts
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.model.max_seq_length,
                             return_tensors="np")
        out = self.session.run(None, {n: enc[n].astype(np.int64, copy=False) for n in self.input_names})[0]
        out = out.astype(np.float32, copy=False)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def build_encoder(model_cfg: ModelConfig, embed_cfg: EmbedConfig | None, storage: Storage,
                  card: ModelCard | None = None, backend: str | None = None) -> Encoder:
    """The encoder of ``backend`` (default: ``model_cfg.backend``) for the configured model (``embed_cfg`` None:
    the encoder's defaults)."""
    backend = backend or model_cfg.backend
    if card is not None and card.backend == "instrument":  # benchmarks only (env-gated, see embedding.instrument)
        from medembed.embedding.instrument import InstrumentEncoder

        return InstrumentEncoder(model_cfg, embed_cfg, storage, card)
    if backend not in ENCODERS:
        raise ValueError(f"unknown encoder backend {backend!r}; known: {sorted(ENCODERS)}")
    return ENCODERS[backend](model_cfg, embed_cfg, storage, card)


def encoder_actor_kwargs(model_cfg: ModelConfig, embed_cfg: EmbedConfig, storage: Storage, card: ModelCard) -> dict:
    """Constructor kwargs that rebuild an encoder inside a Ray actor (plain data: picklable)."""
    return {"model_cfg": model_cfg.model_dump(), "embed_cfg": embed_cfg.model_dump(), "storage": storage,
            "card": card.to_dict()}


def encoder_from_kwargs(model_cfg: dict[str, Any], embed_cfg: dict[str, Any], storage: Storage,
                        card: dict[str, Any] | None) -> Encoder:
    return build_encoder(ModelConfig.model_validate(model_cfg), EmbedConfig.model_validate(embed_cfg),
                         storage, ModelCard.from_dict(card) if card else None)
