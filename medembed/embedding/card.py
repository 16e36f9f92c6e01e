"""The model card: a model's identity, dimension, max length, prompts and similarity, resolved once per job.

Models come bundled, from a local folder, a hub id, ``s3://`` or the MLflow registry; finding their
files, downloading and loading them is ``embedding.loading``. A card has one dict form (``to_dict``,
read back by ``from_dict``), used in manifests, actor arguments and the saved ``medembed_model.json``.

Query/document asymmetry lives here and nowhere else: bge-*-en-v1.5 prefixes queries with an
instruction, e5 prefixes both sides, MiniLM uses none.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medembed.config import ModelConfig
from medembed.embedding.loading import (
    CARD_FILE,
    config_folder,
    locate_model,
    max_seq_length_of,
    module_stack_dimension,
    read_json,
)
from medembed.runtime.storage import DEFAULT_STORAGE, Storage

BGE_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "


@dataclass(frozen=True)
class Prompts:
    query: str = ""
    document: str = ""


@dataclass(frozen=True)
class ModelCard:
    """Everything a job needs to know about a model, resolved once: identity, shape, prompts.

    Prompts come from the model folder's saved prompts first (sentence-transformers'
    ``config_sentence_transformers.json``, then this card), then the family defaults, then config
    overrides. ``save`` writes the card next to a model medembed produced.
    """

    source: str  # what the user asked for
    path: str  # local folder, or a hub id for sentence-transformers to load
    model_id: str  # stable name recorded with every vector
    revision: str
    dim: int
    max_seq_length: int
    prompts: Prompts = field(default_factory=Prompts)
    similarity: str = "cosine"
    base_model: str | None = None
    training: dict[str, Any] | None = None
    backend: str = "torch"  # torch, onnx, onnx-int8: what computes the vectors (cards saved before: torch)
    precision: str = "float32"  # float32, bfloat16, float16, int8; auto: torch's bfloat16 on CUDA, float32 on CPU

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in self.model_id.split("/")[-1].lower()).strip("_")

    def to_dict(self) -> dict[str, Any]:
        """The one dict form of a card (flat, JSON-able): manifests, actor arguments, the saved card file."""
        return {"model_id": self.model_id, "revision": self.revision, "dim": self.dim,
                "max_seq_length": self.max_seq_length, "query_prompt": self.prompts.query,
                "document_prompt": self.prompts.document, "similarity": self.similarity,
                "base_model": self.base_model, "training": self.training, "source": self.source,
                "path": self.path, "backend": self.backend, "precision": self.precision}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        """The card of a ``to_dict`` dict; also reads the older forms: ``dataclasses.asdict`` (nested
        ``prompts``), dicts without ``path``/``backend``/``precision`` and saved card files (no ``source``,
        extra keys ignored)."""
        d = dict(d)
        prompts = d.pop("prompts", None)
        if isinstance(prompts, dict):
            prompts = Prompts(**prompts)
        elif not isinstance(prompts, Prompts):
            prompts = Prompts(query=d.get("query_prompt") or "", document=d.get("document_prompt") or "")
        known = {f.name for f in dataclasses.fields(cls)} - {"prompts"}
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs.setdefault("source", "")
        kwargs.setdefault("path", "")
        return cls(prompts=prompts, **kwargs)

    def on_this_node(self, cfg: ModelConfig, storage: Storage = DEFAULT_STORAGE) -> ModelCard:
        """The same card with a path valid on this node (an ``s3://`` or registry model is cached per node)."""
        if os.path.isdir(self.path) or not self.source.startswith(("s3://", "models:/")):
            return self
        return dataclasses.replace(self, path=locate_model(cfg, storage)[1])

    def save(self, folder: str | os.PathLike[str], **extra: Any) -> Path:
        """Write ``medembed_model.json`` into a model folder (plus ``extra`` keys)."""
        target = Path(folder) / CARD_FILE
        data = {k: v for k, v in {**self.to_dict(), **extra}.items() if k not in ("source", "path")}
        target.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
        return target


def family_prompts(model_id: str) -> Prompts:
    """The query/document prefixes a model family was trained with."""
    name = model_id.lower().rstrip("/").split("/")[-1]
    if (name.startswith("bge-") and name.endswith("-en-v1.5")) or name.startswith("medembed-"):
        return Prompts(query=BGE_QUERY_INSTRUCTION)
    if "e5-" in name or name.startswith("e5"):
        return Prompts(query="query: ", document="passage: ")
    return Prompts()


def _saved_prompts(folder: Path) -> tuple[dict[str, str], str | None]:
    """Prompts and similarity that sentence-transformers (or medembed) saved with the model."""
    st_cfg = read_json(folder / "config_sentence_transformers.json")
    card = read_json(folder / CARD_FILE)
    prompts = dict(st_cfg.get("prompts") or {})
    for side in ("query", "document"):
        if card.get(f"{side}_prompt") is not None:
            prompts.setdefault(side, card[f"{side}_prompt"])
    return prompts, st_cfg.get("similarity_fn_name") or card.get("similarity")


def resolve_card(cfg: ModelConfig, storage: Storage = DEFAULT_STORAGE) -> ModelCard:
    """The model card of the configured model, resolved once per job (no weights loaded)."""
    if cfg.name.strip().lower().startswith("instrument:"):  # benchmarks only (env-gated, see embedding.instrument)
        from medembed.embedding.instrument import instrument_card

        return instrument_card(cfg)
    source, path, model_id, revision = locate_model(cfg, storage)
    folder = config_folder(path, revision)
    saved, similarity = _saved_prompts(folder)
    fam = family_prompts(model_id)
    query = saved.get("query", fam.query)
    document = saved.get("document", saved.get("passage", fam.document))
    prompts = Prompts(query=query if cfg.query_prompt is None else cfg.query_prompt,
                      document=document if cfg.document_prompt is None else cfg.document_prompt)
    base = read_json(folder / CARD_FILE)
    return ModelCard(source=source, path=path, model_id=model_id, revision=revision,
                     dim=module_stack_dimension(folder), max_seq_length=max_seq_length_of(folder, cfg),
                     prompts=prompts, similarity=similarity or "cosine",
                     base_model=base.get("base_model"), training=base.get("training"), backend=cfg.backend,
                     precision=backend_precision(cfg.backend, cfg.dtype))


BACKEND_PRECISION = {"onnx": "float32", "onnx-int8": "int8"}


def backend_precision(backend: str, dtype: str = "float32") -> str:
    """The numeric precision a backend computes in (torch: the configured dtype)."""
    if backend == "torch":
        return dtype
    if backend not in BACKEND_PRECISION:
        raise ValueError(f"unknown encoder backend {backend!r}; known: {['torch', *sorted(BACKEND_PRECISION)]}")
    return BACKEND_PRECISION[backend]


