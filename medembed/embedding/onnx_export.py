"""ONNX exports of a model, made once per model revision into the model cache and shared by every actor.

Why not sentence-transformers' own ``backend="onnx"`` and ``export_*_onnx_model`` helpers: they go
through optimum-onnx, whose only release (0.1.0) needs ``transformers<4.58``, while medembed runs
on transformers 5.x (importing ``optimum.onnxruntime`` fails on ``get_parameter_dtype``). So the
three steps those helpers wrap are called directly, each a library call, not a hand-written graph:

1. ``torch.onnx.export`` of the loaded SentenceTransformer (transformer, pooling, dense, normalize
   in one graph whose output is ``sentence_embedding``), eager attention so step 2 can fuse it;
2. ``onnxruntime.transformers.optimizer.optimize_model`` (fused attention, skip-layernorm, gelu),
   the optimizer optimum's ``ORTOptimizer`` runs;
3. ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, per channel, 7-bit range: CPUs
   without VNNI saturate in the 8-bit u8*s8 kernels and lose ~8 cosine points otherwise), what
   optimum's ``ORTQuantizer`` runs.

Exports are atomic: each is built in a temp folder beside its target and renamed into place; a
process that loses the race drops its copy and uses the winner's. Nothing is exported twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from medembed.embedding.card import BACKEND_PRECISION, ModelCard

log = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
MODEL_FILE = "model.onnx"
DONE_FILE = "export.json"


def model_cache_folder(card: ModelCard, cache_dir: str) -> Path:
    """The cache folder of one model revision: every backend's export and quality record lives here."""
    key = hashlib.sha256(f"{card.model_id}\n{card.revision}".encode()).hexdigest()[:16]
    return Path(os.path.expanduser(cache_dir)) / "exports" / f"{card.slug}-{key}"


def export_folder(card: ModelCard, cache_dir: str, backend: str) -> Path:
    return model_cache_folder(card, cache_dir) / backend


def _atomic_build(target: Path, build) -> Path:
    """Run ``build(tmp_folder)`` and rename the folder to ``target``; reuse ``target`` if it exists."""
    if (target / DONE_FILE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp", dir=target.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by every actor and user of the node
        try:
            tmp.rename(target)
        except OSError:  # another process renamed its export first: theirs is as good as ours
            if not (target / DONE_FILE).exists():
                raise
            log.info("export %s finished concurrently elsewhere; using it", target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _export_fp32(card: ModelCard, out: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(card.path, device="cpu", model_kwargs={"attn_implementation": "eager"})
    st.max_seq_length = card.max_seq_length
    st.eval()
    sample = st.tokenize(["a short sample", "a somewhat longer sample sentence for tracing"])
    names = [n for n in INPUT_NAMES if n in sample]

    class _Wrapper(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, *args):
            return self.model(dict(zip(names, args)))["sentence_embedding"]

    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"sentence_embedding": {0: "batch"}}
    raw = out / "raw.onnx"
    with torch.inference_mode():
        torch.onnx.export(_Wrapper(st), tuple(sample[n] for n in names), str(raw), input_names=names,
                          output_names=["sentence_embedding"], dynamic_axes=axes, opset_version=17, dynamo=False)
    cfg = st[0].auto_model.config
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(str(raw), model_type="bert", num_heads=int(cfg.num_attention_heads),
                         hidden_size=int(cfg.hidden_size), opt_level=1)
    opt.save_model_to_file(str(out / MODEL_FILE))
    raw.unlink()
    fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
    st.tokenizer.save_pretrained(str(out))
    _write_done(out, card, "onnx", {"inputs": names, "fused": fused})


def _export_int8(card: ModelCard, fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32 / MODEL_FILE), str(out / MODEL_FILE), weight_type=QuantType.QInt8, per_channel=True,
                     reduce_range=True, op_types_to_quantize=["MatMul"], extra_options={"DefaultTensorType": 1})
    for f in fp32.iterdir():
        if f.name not in (MODEL_FILE, DONE_FILE) and f.is_file():
            shutil.copy2(f, out / f.name)
    inputs = json.loads((fp32 / DONE_FILE).read_text())["inputs"]
    _write_done(out, card, "onnx-int8", {"inputs": inputs, "quantization": "dynamic int8, MatMul, per channel, "
                                                                           "reduce_range"})


def _write_done(out: Path, card: ModelCard, backend: str, extra: dict) -> None:
    info = {"model_id": card.model_id, "revision": card.revision, "backend": backend,
            "precision": BACKEND_PRECISION[backend], "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **extra}
    (out / DONE_FILE).write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")


def ensure_export(card: ModelCard, cache_dir: str, backend: str) -> Path:
    """The folder of ``backend``'s export of this model revision, exporting it first if needed."""
    if backend not in ("onnx", "onnx-int8"):
        raise ValueError(f"no ONNX export for backend {backend!r}")
    t0 = time.perf_counter()
    fp32 = export_folder(card, cache_dir, "onnx")
    built = not (fp32 / DONE_FILE).exists()
    _atomic_build(fp32, lambda tmp: _export_fp32(card, tmp))
    folder = fp32
    if backend == "onnx-int8":
        folder = export_folder(card, cache_dir, "onnx-int8")
        built = built or not (folder / DONE_FILE).exists()
        _atomic_build(folder, lambda tmp: _export_int8(card, fp32, tmp))
    if built:
        log.info("exported %s (%s) as %s into %s in %.1fs", card.model_id, card.revision, backend, folder,
                 time.perf_counter() - t0)
    return folder


def export_info(folder: Path) -> dict:
    return json.loads((folder / DONE_FILE).read_text(encoding="utf-8"))
