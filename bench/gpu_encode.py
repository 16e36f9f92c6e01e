"""GPU encode throughput of BAAI/bge-base-en-v1.5's architecture (random weights): precision, batching, compile.

Self-contained (torch + transformers only; no Ray, LanceDB or pydantic), so it runs on a bare GPU
machine with no hub access. It builds a BertModel with bge-base-en-v1.5's shape (hidden 768,
12 layers, 12 heads, FFN 3072, vocab 30522, 512 positions) from random weights, draws N synthetic
passages of realistic token lengths (64-512: 55% full chunks of 400-512 tokens, the rest 64-400,
like chunked clinical notes) as random token ids, and encodes them (CLS pooling, L2 normalize,
vectors copied to the host) under each variant:

- dtype: fp32 (true fp32 matmuls, TF32 off) vs bf16 weights and activations;
- batching: ``unsorted`` (input order, fixed ``--batch-rows`` rows, padded to the batch's longest)
  vs ``bucketed`` (medembed's plan_batches: longest first, padded tokens <= ``--token-budget``);
- attention: sdpa (PyTorch scaled_dot_product_attention) vs eager;
- torch.compile (dynamic shapes, sequence lengths padded to a multiple of 64 to bound recompiles).

Reported per variant: real (non-pad) tokens/s, passages/s, padding overhead, and the fraction of
the chip's dense bf16 peak (``--peak-tflops``, default 790: an 8192^3 bf16 matmul measured on the
H200) reached in useful FLOPs:

    FLOPs(passage of s tokens) = 2 * P * s + 4 * L * h * s^2

P = non-embedding parameters (12 layers x (4h^2 + 2h*ffn) weights + biases + layernorms = 85.1M),
L = 12 layers, h = 768; the first term is every weight used once per token (multiply + add), the
second the two attention matmuls (QK^T and AV: 2 * s^2 * h each, per layer). Embedding lookups,
softmax and layernorms are left out (< 1%). Padding tokens are not counted as useful work.

Tokenization is not timed (ids are synthetic): this measures the model's share of an embed job.

    python bench/gpu_encode.py --out results.json               # on the GPU machine
    python bench/gpu_encode.py --tiny --n 64 --device cpu        # CPU smoke test of every variant
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import time
from collections.abc import Sequence

import numpy as np
import torch

# numpy-only module: on a GPU machine without medembed installed, run from the checkout with PYTHONPATH=.
from medembed.embedding.batching import plan_batches

log = logging.getLogger("gpu_encode")


def fixed_batches(n: int, rows: int) -> list[np.ndarray]:
    return [np.arange(i, min(n, i + rows)) for i in range(0, n, rows)]


def synthetic_lengths(n: int, seed: int = 0, lo: int = 64, hi: int = 512) -> np.ndarray:
    rng = np.random.default_rng(seed)
    full = rng.random(n) < 0.55
    return np.where(full, rng.integers(400, hi + 1, n), rng.integers(lo, 400, n)).astype(np.int64)


def build_model(tiny: bool, attn: str, dtype: torch.dtype, device: str):
    from transformers import BertConfig, BertModel

    if tiny:
        cfg = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                         vocab_size=30522, max_position_embeddings=512)
    else:
        cfg = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                         vocab_size=30522, max_position_embeddings=512)
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    model = BertModel(cfg, add_pooling_layer=False).eval()
    return model.to(device=device, dtype=dtype), cfg


def nonembedding_params(cfg) -> int:
    h, f, n_layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    per_layer = 4 * h * h + 4 * h + 2 * h * f + h + f + 4 * h  # qkvo + biases, ffn in/out + biases, 2 layernorms
    return n_layers * per_layer


def useful_flops(lengths: np.ndarray, cfg) -> float:
    s = lengths.astype(np.float64)
    return float((2 * nonembedding_params(cfg) * s + 4 * cfg.num_hidden_layers * cfg.hidden_size * s * s).sum())


def make_batch(ids: np.ndarray, lengths: np.ndarray, idx: np.ndarray, device: str, pad_multiple: int):
    width = int(lengths[idx].max())
    if pad_multiple > 1:
        width = min(ids.shape[1], math.ceil(width / pad_multiple) * pad_multiple)
    input_ids = torch.from_numpy(ids[idx, :width])
    mask = (torch.arange(width)[None, :] < torch.from_numpy(lengths[idx])[:, None]).long()
    input_ids = input_ids * mask  # pad id 0
    return (input_ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)), len(idx) * width


def run_variant(model, batches, ids, lengths, device, pad_multiple, dim, warmup_batches=3) -> dict:
    def forward(input_ids, mask):
        out = model(input_ids=input_ids, attention_mask=mask).last_hidden_state[:, 0]
        return torch.nn.functional.normalize(out.float(), dim=-1)

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        t0 = time.perf_counter()
        for idx in batches[:warmup_batches]:  # the longest batches: allocator, kernels, compiled graphs warm
            (a, m), _ = make_batch(ids, lengths, idx, device, pad_multiple)
            forward(a, m).cpu()
        sync()
        warm_s = time.perf_counter() - t0
        vecs = np.empty((len(lengths), dim), dtype=np.float32)
        padded = 0
        t0 = time.perf_counter()
        for idx in batches:
            (a, m), n_padded = make_batch(ids, lengths, idx, device, pad_multiple)
            vecs[idx] = forward(a, m).cpu().numpy()
            padded += n_padded
        sync()
        secs = time.perf_counter() - t0
    return {"seconds": secs, "warmup_seconds": warm_s, "padded_tokens": padded, "batches": len(batches),
            "finite": bool(np.isfinite(vecs).all()), "vectors": vecs}


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="passages (bf16 variants)")
    ap.add_argument("--n-fp32", type=int, default=10_000, help="passages for the (slow) fp32 variants")
    ap.add_argument("--token-budget", type=int, nargs="+", default=[65536, 262144])
    ap.add_argument("--batch-rows", type=int, default=128, help="rows per batch of the unsorted variants")
    ap.add_argument("--peak-tflops", type=float, default=790.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer toy model (CPU smoke test)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--budget-s", type=float, default=330.0, help="skip variants once this much time has passed")
    ap.add_argument("--only", default=None, help="run only the variants whose name contains this")
    ap.add_argument("--out", default=None, help="write the results JSON here (rewritten after every variant)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    start = time.perf_counter()

    rng = np.random.default_rng(1)
    n_max = max(args.n, args.n_fp32)
    lengths_all = synthetic_lengths(n_max)
    ids_all = rng.integers(1000, 30000, size=(n_max, 512), dtype=np.int64)
    ids_all[:, 0] = 101  # [CLS]
    budget0 = args.token_budget[0]
    variants = [  # name, dtype, attn, batching, budget, compile, n
        ("bf16 sdpa bucketed", torch.bfloat16, "sdpa", "bucketed", budget0, False, args.n),
        ("bf16 sdpa unsorted", torch.bfloat16, "sdpa", "unsorted", None, False, args.n),
        ("fp32 sdpa unsorted", torch.float32, "sdpa", "unsorted", None, False, args.n_fp32),
        ("fp32 sdpa bucketed", torch.float32, "sdpa", "bucketed", budget0, False, args.n_fp32),
        ("bf16 eager bucketed", torch.bfloat16, "eager", "bucketed", budget0, False, args.n),
        *[(f"bf16 sdpa bucketed budget={b}", torch.bfloat16, "sdpa", "bucketed", b, False, args.n)
          for b in args.token_budget[1:]],
    ]
    if not args.no_compile:
        variants.append(("bf16 sdpa bucketed compiled", torch.bfloat16, "sdpa", "bucketed", budget0, True, args.n))
    from results_file import header_lines  # bench/ is on sys.path (python bench/gpu_encode.py)

    results: dict = {"header": header_lines("gpu_encode")[1:],  # date, machine, software, commit, command
                     "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor(),
                     "torch": torch.__version__, "peak_tflops": args.peak_tflops, "tiny": args.tiny,
                     "flops_formula": "2*P*s + 4*L*h*s^2 per passage of s tokens (P non-embedding params)",
                     "variants": []}
    models: dict = {}
    reference = None
    for name, dtype, attn, batching, budget, compiled, n in variants:
        if args.only and args.only not in name:
            continue
        elapsed = time.perf_counter() - start
        if elapsed > args.budget_s:
            log.warning("skipping %s: %.0fs of the %.0fs budget used", name, elapsed, args.budget_s)
            results["variants"].append({"name": name, "skipped": f"time budget ({elapsed:.0f}s used)"})
            continue
        key = (dtype, attn)
        if key not in models:
            models.clear()
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
            models[key] = build_model(args.tiny, attn, dtype, args.device)
        model, cfg = models[key]
        fwd_model = torch.compile(model, dynamic=True) if compiled else model
        lengths, ids = lengths_all[:n], ids_all[:n]
        batches = plan_batches(lengths, budget) if batching == "bucketed" else fixed_batches(n, args.batch_rows)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        try:
            r = run_variant(fwd_model, batches, ids, lengths, args.device, 64 if compiled else 1, cfg.hidden_size)
        except Exception as e:  # e.g. torch.compile failing on this machine: keep the other variants
            log.exception("variant %s failed", name)
            results["variants"].append({"name": name, "error": f"{type(e).__name__}: {e}"[:2000]})
            continue
        vecs = r.pop("vectors")
        if reference is None and dtype == torch.bfloat16 and attn == "sdpa":
            reference = vecs
        real = int(lengths.sum())
        flops = useful_flops(lengths, cfg)
        row = {"name": name, "dtype": str(dtype).replace("torch.", ""), "attention": attn, "batching": batching,
               "token_budget": budget, "compiled": compiled, "passages": n, "real_tokens": real,
               "padding_overhead": r["padded_tokens"] / real - 1, "tokens_per_s": real / r["seconds"],
               "passages_per_s": n / r["seconds"], "useful_tflops": flops / r["seconds"] / 1e12,
               "fraction_of_peak": flops / r["seconds"] / 1e12 / args.peak_tflops,
               "peak_mem_gib": (torch.cuda.max_memory_allocated() / 2**30) if args.device.startswith("cuda") else None,
               **r}
        if reference is not None and vecs is not reference:
            m = min(len(reference), len(vecs))
            row["mean_cos_vs_bf16_sdpa"] = float((reference[:m] * vecs[:m]).sum(1).mean())
        log.info("%-36s %10.0f tok/s %8.1f passages/s pad %+5.1f%% %6.1f TFLOP/s (%.1f%% of peak) %.1fs (warm-up %.1fs)",
                 name, row["tokens_per_s"], row["passages_per_s"], 100 * row["padding_overhead"],
                 row["useful_tflops"], 100 * row["fraction_of_peak"], r["seconds"], r["warmup_seconds"])
        results["variants"].append(row)
        results["total_seconds"] = time.perf_counter() - start
        if args.out:
            with open(args.out, "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
