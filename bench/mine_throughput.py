"""Hard-negative mining throughput and false-negative filter share on PMC-Patients pairs.

    HF_HUB_OFFLINE=1 python bench/mine_throughput.py [--notes 1000] [--modes default,in-driver,one-actor,pools] [--no-st]

1. pairs: the synth extractive generator over ../shared/data/pmc_patients/notes.jsonl (on Ray);
2. medembed: the mining job body (candidate table in LanceDB, then mining), in each execution of --modes;
3. loop A: one process, same encoder, the job's candidate vectors: encode queries + numpy top-k + selection
   (compared with the mining stage); loop W: one process that also loads the model and embeds the positives
   (compared with the job's candidate + mining stages: the job's model work, Ray's fixed costs included);
   loop W runs twice: in this process (warm: torch and sentence-transformers already imported) and in a fresh
   process timed from its start (cold: it pays one process start and the imports, as the job's one actor does);
   an untimed warm-up (imports, one model load) comes first, so the in-driver execution, which runs in this
   process, starts as warm as loop W;
4. baseline B: sentence-transformers' ``mine_hard_negatives`` (same window/margin, no same-note exclusion),
   and how often its negatives equal medembed's selection run with the same settings.
Numbers go to the log and are appended to bench/RESULTS.md (not with --no-results).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results_file import append_section, header_lines

REPO = Path(__file__).resolve().parents[1]
NOTES = REPO.parent / "shared" / "data" / "pmc_patients" / "notes.jsonl"
log = logging.getLogger("bench.mine_throughput")


def generate_pairs(notes: int, out: str) -> str:
    from medembed.config import InputConfig
    from medembed.ingest import read_documents
    from medembed.runtime.artifacts import new_run_id
    from medembed.synth.config import SynthConfig
    from medembed.synth.generate import generate_pairs_from_docs

    inp = InputConfig(uri=str(NOTES), format="jsonl", id_field="patient_uid", text_fields=["patient"],
                      title_field="title", limit=notes)
    docs = read_documents(inp, os.path.join(out, "quarantine"))
    generate_pairs_from_docs(docs, SynthConfig(backend="extractive", output_dir=os.path.join(out, "pairs"),
                                               concurrency=2), run_id=new_run_id("generate_pairs"))
    return os.path.join(out, "pairs")


def numpy_baseline(cfg, pairs, cand_uri: str | None, exclude_same_note: bool, top_k: int):
    """Single process: encode queries, exact top-k, select; returns ({pair_id: negative ids}, seconds).

    With ``cand_uri`` the candidate vectors are the job's (read before the clock starts); without, the
    loop also loads the model and embeds the positives itself (the whole job's model work, in one process).
    """
    from medembed import schema as S
    from medembed.embedding.card import resolve_card
    from medembed.embedding.embedder import ChunkEmbedder
    from medembed.embedding.encoders import build_encoder, encoder_actor_kwargs
    from medembed.mining import columns as M
    from medembed.mining.candidates import positive_rows
    from medembed.runtime.storage import DEFAULT_STORAGE

    if cand_uri is None:
        t0 = time.perf_counter()  # the clock covers the model load and the positives' embedding
        embedder = ChunkEmbedder(**encoder_actor_kwargs(cfg.model, cfg.embed, DEFAULT_STORAGE, resolve_card(cfg.model)))
        enc, t = embedder.encoder, embedder(positive_rows(pairs))
    else:
        t = DEFAULT_STORAGE.lance_dataset(cand_uri).to_table(columns=[S.CHUNK_ID, S.DOC_ID, S.VECTOR])
        enc = build_encoder(cfg.model, cfg.embed, DEFAULT_STORAGE)
        t0 = time.perf_counter()
    ids = np.asarray(t[S.CHUNK_ID].to_pylist(), dtype=object)
    notes = np.asarray(t[S.DOC_ID].to_pylist(), dtype=object)
    vecs = np.asarray(t[S.VECTOR].combine_chunks().flatten().to_numpy(), dtype=np.float32).reshape(len(t), -1)
    out = select_all(cfg, pairs, enc.encode_queries(pairs["query"].to_pylist()), ids, notes, vecs,
                     exclude_same_note, top_k, M.positive_id)
    return out, time.perf_counter() - t0


def select_all(cfg, pairs, q, ids, notes, vecs, exclude_same_note: bool, top_k: int, positive_id):
    from medembed.index.search import top_k_exact
    from medembed.mining.selection import SelectParams, select_negatives

    mc = cfg.mining
    params = SelectParams(mc.num_negatives, mc.min_rank, mc.max_rank, mc.relative_margin, mc.absolute_margin,
                          exclude_same_note)
    row_of = {c: i for i, c in enumerate(ids)}
    pos = [row_of[positive_id(p)] for p in pairs["passage"].to_pylist()]
    pos_scores = np.einsum("ij,ij->i", q, vecs[pos])
    idx, val = top_k_exact(q, vecs, top_k)
    out = {}
    for i, (pid, note) in enumerate(zip(pairs["pair_id"].to_pylist(), pairs["note_id"].to_pylist())):
        sel = select_negatives(val[i], idx[i] == pos[i], notes[idx[i]] == note, float(pos_scores[i]), params)
        out[pid] = list(ids[idx[i][sel.indices]])
    return out


def cold_loop_w(cfg, pairs_dir: str, work: str) -> tuple[dict, float]:
    """Loop W in a fresh process, timed from before its start to its result (process start and imports in)."""
    out = os.path.join(work, "cold_loop_w.json")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--cold-loop-w", pairs_dir, out], check=True,
                   env={**os.environ, "MEDEMBED_BENCH_CFG": cfg.model_dump_json()})
    secs = time.perf_counter() - t0
    return json.loads(Path(out).read_text()), secs


def _cold_loop_w_child(pairs_dir: str, out: str) -> int:
    from medembed.mining.candidates import read_pairs
    from medembed.mining.config import MineNegativesJobConfig

    cfg = MineNegativesJobConfig.model_validate_json(os.environ["MEDEMBED_BENCH_CFG"])
    negs, _ = numpy_baseline(cfg, read_pairs(pairs_dir), None, True, cfg.mining.retrieve_k)
    Path(out).write_text(json.dumps({k: [str(i) for i in v] for k, v in negs.items()}))
    return 0


def st_baseline(cfg, pairs):
    """sentence-transformers' mine_hard_negatives (n-tuple, top sampling) on the same pairs."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from medembed.embedding.card import resolve_card
    from medembed.embedding.loading import load_sentence_transformer

    model = load_sentence_transformer(resolve_card(cfg.model), cfg.model)
    mc = cfg.mining
    data = Dataset.from_dict({"query": pairs["query"].to_pylist(), "positive": pairs["passage"].to_pylist()})
    t0 = time.perf_counter()
    res = mine_hard_negatives(data, model, range_min=mc.min_rank, range_max=mc.max_rank,
                              relative_margin=mc.relative_margin, num_negatives=mc.num_negatives,
                              sampling_strategy="top", output_format="n-tuple", batch_size=64, verbose=False)
    secs = time.perf_counter() - t0
    negs = {(r["query"], r["positive"]): [r[f"negative_{k}"] for k in range(1, mc.num_negatives + 1)] for r in res}
    return negs, secs


def warm_up(cfg, pairs) -> None:
    """Untimed: import torch and sentence-transformers, load the model once and encode a few queries, so
    every timed run here (the job's executions, loop A, loop W) starts from the same warm process; the
    cold loop W is the reference for a fresh process."""
    from medembed.embedding.encoders import build_encoder
    from medembed.runtime.storage import DEFAULT_STORAGE

    build_encoder(cfg.model, cfg.embed, DEFAULT_STORAGE).encode_queries(pairs["query"].to_pylist()[:32])


def run_job(cfg, mode: str):
    """One run of the mining job body; (manifest data, counts)."""
    from medembed.jobs.mine_negatives import mine_negatives
    from medembed.runtime.manifest import RunManifest

    cfg = cfg.model_copy(deep=True)
    if mode != "default":  # default: the job picks its execution from its own thresholds
        cfg.mining.one_actor_max_pairs = 0 if mode == "pools" else 10**9
        cfg.mining.in_driver_max_pairs = 10**9 if mode == "in-driver" else 0
    manifest = RunManifest("mine_negatives", cfg.output.run_dir, cfg.model_dump(mode="json"))
    counts = mine_negatives(cfg, manifest)
    manifest.finish()
    return manifest.data, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", type=int, default=1000)
    ap.add_argument("--modes", default="default", help="job executions to time, comma-separated: default (what "
                    "the job picks for this many pairs), in-driver (the driver process embeds the positives and "
                    "mines), one-actor (one actor does), pools (an embedding pool, then a mining pool)")
    ap.add_argument("--actors", type=int, default=1, help="mining actors of the pools mode (>1: 1 torch thread "
                    "each); the job's default is 1 actor with every core")
    ap.add_argument("--no-st", action="store_true", help="skip the sentence-transformers baseline")
    ap.add_argument("--no-results", dest="results", action="store_false", help="do not append to bench/RESULTS.md")
    ap.add_argument("--cold-loop-w", nargs=2, metavar=("PAIRS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cold_loop_w:
        return _cold_loop_w_child(*args.cold_loop_w)
    from medembed.runtime.console import setup_logging

    setup_logging()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import pyarrow.parquet as pq
    import ray

    from medembed.config import load_config
    from medembed.index.tables import table_uri
    from medembed.mining import columns as M
    from medembed.mining.candidates import read_pairs
    from medembed.mining.config import MineNegativesJobConfig
    from medembed.runtime.ray_setup import init_ray

    init_ray()
    ray.data.DataContext.get_current().enable_progress_bars = False
    work = tempfile.mkdtemp(prefix="mine_bench_")
    t0 = time.perf_counter()
    pairs_dir = generate_pairs(args.notes, work)
    gen_s = time.perf_counter() - t0
    sets = [f"pairs.path={pairs_dir}", f"candidates.store_uri={work}/lancedb", f"output.dir={work}/triplets",
            f"output.run_dir={work}/runs", f"mining.num_actors={args.actors}", "mining.num_cpus=1",
            "embed.num_actors=1"]
    if args.actors > 1:
        sets.append(f"embed.torch_threads={max(1, (os.cpu_count() or 1) // args.actors)}")
    cfg = load_config(MineNegativesJobConfig, "mine_negatives_pmc_patients", sets)
    pairs = read_pairs(pairs_dir)
    n = pairs.num_rows
    cand_uri = table_uri(cfg.candidates.store_uri, "mining_candidates__all_minilm_l6_v2")

    warm_up(cfg, pairs)
    runs = {}
    for mode in args.modes.split(","):
        data, counts = run_job(cfg, mode)
        out = pq.read_table(f"{cfg.output.dir}/{data['run_id']}/triplets")
        runs[mode] = (data, counts, dict(zip(out[M.QUERY_ID].to_pylist(), out[M.NEGATIVE_IDS].to_pylist())))
    local, local_s = numpy_baseline(cfg, pairs, cand_uri, True, cfg.mining.retrieve_k)
    whole, whole_s = numpy_baseline(cfg, pairs, None, True, cfg.mining.retrieve_k)
    cold, cold_s = cold_loop_w(cfg, pairs_dir, work)
    fnf = counts["false_negative_filter"]
    threads = cfg.embed.torch_threads or os.cpu_count()
    lines = [f"- pairs: {n} from {args.notes} notes (extractive generator, {gen_s:.1f} s); candidates: "
             f"{counts['candidates']}; window [{cfg.mining.min_rank}, {cfg.mining.max_rank}), "
             f"{cfg.mining.num_negatives} negatives, relative_margin {cfg.mining.relative_margin}, same-note "
             f"exclusion; {threads} torch thread(s) per actor and in the loops",
             f"- loop A, one process, the job's candidate vectors (encode queries + numpy top-k + selection): "
             f"{local_s:.1f} s = {n / local_s:.1f} queries/s",
             f"- loop W, one process doing the job's model work (load the model, embed the positives, then A): "
             f"{whole_s:.1f} s; negatives identical to A for {100 * sum(whole[k] == local[k] for k in local) / n:.1f}%",
             f"- loop W cold, the same in a fresh process, timed from its start (process start and imports in): "
             f"{cold_s:.1f} s; negatives identical to A for "
             f"{100 * sum(cold[k] == [str(i) for i in local[k]] for k in local) / n:.1f}%"]
    for mode, (data, _, negs) in runs.items():
        d = data["durations_s"]
        both = d["candidates"] + d["mine"]
        stage = (f"mining stage {d['mine']:.1f} s (its queries were encoded during the candidate stage)"
                 if data["execution"] in ("one actor", "in driver") else
                 f"mining stage {d['mine']:.1f} s = {n / d['mine']:.1f} queries/s -> {n / d['mine'] / (n / local_s):.2f}x "
                 "loop A")
        lines.append(f"- medembed, {data['execution']} ({mode}; exact retrieval): candidates {d['candidates']:.1f} s "
                     f"+ mining = {both:.1f} s = {n / both:.1f} queries/s -> **{whole_s / both:.2f}x loop W**, "
                     f"**{cold_s / both:.2f}x loop W cold**; {stage}; "
                     f"negatives identical to A for {100 * sum(local[k] == negs[k] for k in local) / n:.1f}% of queries")
    lines.append(f"- false-negative filter removed {fnf['removed']} of {fnf['considered']} candidates "
                 f"({100 * fnf['removed_share']:.2f}%); queries short of {cfg.mining.num_negatives}: "
                 f"{counts['queries_short']} {counts['queries_short_by_reason']}")
    if not args.no_st:
        cfg_st = cfg.model_copy(deep=True)
        cfg_st.mining.top_k = cfg.mining.max_rank + 1
        ours, _ = numpy_baseline(cfg_st, pairs, cand_uri, False, cfg.mining.max_rank + 1)
        st, st_s = st_baseline(cfg, pairs)
        text_of = {M.positive_id(p): p for p in pairs["passage"].to_pylist()}
        keyed = {(q, p): [text_of[i] for i in ours[pid]] for pid, q, p in
                 zip(pairs["pair_id"].to_pylist(), pairs["query"].to_pylist(), pairs["passage"].to_pylist())}
        agree = sum(keyed.get(k) == v for k, v in st.items()) / max(1, len(st))
        lines.append(f"- baseline B, sentence-transformers mine_hard_negatives (1 process, encodes too): "
                     f"{n / st_s:.1f} queries/s; on the {len(st)} queries ST kept, medembed's selection with ST's "
                     f"settings (no same-note exclusion, top_k = max_rank + 1) gives the same negatives for "
                     f"{100 * agree:.1f}%")
    for line in lines:
        log.info("%s", line)
    if args.results:
        cmd = "HF_HUB_OFFLINE=1 python bench/mine_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
        append_section([*header_lines("mine_negatives", cmd.strip()), "- model: bundled all-MiniLM-L6-v2", "",
                        *lines])
    return 0


if __name__ == "__main__":
    sys.exit(main())
