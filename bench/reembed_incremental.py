"""Nightly re-embedding: an incremental run vs. a full re-embed of the same corpus, and change detection at 1M chunks.

    HF_HUB_OFFLINE=1 python bench/reembed_incremental.py --chunks 20000      # (a) incremental vs full
    python bench/reembed_incremental.py --detect-only --detect-chunks 1000000  # (b) change detection alone

(a) Corpus: PMC-Patients notes (../shared/data/pmc_patients/notes.jsonl, read in place, never copied into
    the repo), cut into 32-token chunks (``chunking.max_tokens=32`` as in the embed memory runs) and
    written to bench/_work/ until the corpus has >= --chunks chunks. In ONE process and ONE local Ray
    instance (so Ray start is paid once and excluded from every timing), the `reembed` job body runs:
      1. full: an empty database -> every document embedded (the full re-embed time);
      2. incremental: 1% of documents changed (a sentence appended), 0.5% deleted, 0.5% added;
      3. unchanged: the same corpus again (0% changed).
    Each run's time is the manifest's ``job`` duration (lease, read+chunk, diff, embed, commit,
    indexes, verify, switch, cleanup; Ray start and process start excluded), with the per-phase split.
(b) A 1M-chunk table with random vectors (no model; the diff reads only doc_id, chunk_index, doc_hash and
    doc_chunks) and corpus document hashes generated on Ray workers (1% changed, 0.5% deleted, 0.5% added);
    times ``diff_hashes`` alone and records the driver's peak RSS (ru_maxrss) before and after.

Appends a section to bench/RESULTS.md (``--no-append`` to skip).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "reembed"
NOTES = (ROOT / ".." / "shared" / "data" / "pmc_patients" / "notes.jsonl").resolve()
SECTION = "## reembed_incremental"
sys.path.insert(0, str(ROOT))

from results_file import append_section, section_header  # noqa: E402 - bench/ is on sys.path (run as python bench/<name>.py)

SETS = ["chunking.max_tokens=32", "chunking.overlap_tokens=4", "input.id_field=patient_uid",
        "input.text_fields=[patient]", "input.title_field=title", "input.metadata_fields=[]",
        "store.corpus_name=pmc", "store.ann_min_rows=100000000"]


def _cfg(corpus: Path, db: Path, run: str, extra: list[str]):
    from medembed.config import load_config
    from medembed.index.config import ReembedJobConfig

    return load_config(ReembedJobConfig, None, [f"input.uri={corpus}", f"store.uri={db}", f"output.run_dir={WORK / 'runs'}",
                                                f"output.run_name={run}", *SETS, *extra])


def prepare_corpus(n_chunks: int, extra: list[str]) -> tuple[list[dict], list[dict], int]:
    """(notes in the corpus, spare notes for additions, chunks in the corpus)."""
    from medembed.embedding.card import resolve_card
    from medembed.embedding.chunking import chunk_batch, chunk_params

    cfg = _cfg(WORK / "corpus", WORK / "db", "prep", extra)
    params = chunk_params(cfg, resolve_card(cfg.model))
    base = [json.loads(line) for line in NOTES.open(encoding="utf-8") if line.strip()]
    random.Random(0).shuffle(base)
    # the 1,000 notes give ~39k chunks of 32 tokens: past that, they repeat under new ids (<id>-r<k>), as the
    # embed memory runs did, for as many rounds as the corpus and the spare notes (for the 0.5% additions) need
    notes = (n if k == 0 else {**n, "patient_uid": f"{n['patient_uid']}-r{k}"} for k in itertools.count() for n in base)
    used: list[dict] = []
    total, rest = 0, []
    while total < n_chunks:
        batch = list(itertools.islice(notes, 200))
        t = chunk_batch({"doc_id": [n["patient_uid"] for n in batch], "title": [n.get("title") or "" for n in batch],
                         "text": [n["patient"] for n in batch], "metadata": ["{}"] * len(batch)}, params)
        per_doc: dict[str, int] = {}
        for d in t.column("doc_id").to_pylist():
            per_doc[d] = per_doc.get(d, 0) + 1
        for j, n in enumerate(batch):
            if total >= n_chunks:
                rest = batch[j:]
                break
            used.append(n)
            total += per_doc[n["patient_uid"]]
    spare = max(10, len(used) // 100)
    rest += list(itertools.islice(notes, max(0, spare - len(rest))))
    return used, rest[:spare], total


def write_notes(notes: list[dict]) -> Path:
    folder = WORK / "corpus"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.jsonl").write_text("".join(json.dumps(n) + "\n" for n in notes), encoding="utf-8")
    return folder


def mutate(notes: list[dict], spare: list[dict], changed: float, deleted: float, added: float) -> tuple[list[dict], dict]:
    rng = random.Random(1)
    n = len(notes)
    idx = list(range(n))
    rng.shuffle(idx)
    n_changed, n_deleted, n_added = round(n * changed), round(n * deleted), round(n * added)
    ch, de = set(idx[:n_changed]), set(idx[n_changed:n_changed + n_deleted])
    out = []
    for k, note in enumerate(notes):
        if k in de:
            continue
        if k in ch:
            note = {**note, "patient": note["patient"] + " Follow-up: the patient was re-evaluated at the clinic."}
        out.append(note)
    out += spare[:n_added]
    return out, {"changed": n_changed, "deleted": n_deleted, "added": min(n_added, len(spare))}


def run_body(corpus: Path, db: Path, name: str, extra: list[str]) -> dict:
    from medembed.jobs.reembed import reembed
    from medembed.runtime.manifest import RunManifest

    cfg = _cfg(corpus, db, name, extra)
    m = RunManifest("reembed", cfg.output.run_dir, cfg.model_dump(mode="json"), run_id=name)
    t0 = time.perf_counter()
    with m.timed("job"):
        reembed(cfg, m)
    m.finish(m.data.get("exit_status", "succeeded"))
    return {"wall_s": time.perf_counter() - t0, "durations": m.data["durations_s"], "counts": m.data["counts"]}


def bench_incremental(args: argparse.Namespace) -> str:
    from medembed.config import RayConfig
    from medembed.runtime.ray_setup import init_ray

    shutil.rmtree(WORK, ignore_errors=True)
    notes, spare, n_chunks = prepare_corpus(args.chunks, args.set)
    corpus = write_notes(notes)
    init_ray(RayConfig())
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    db = WORK / "db"
    full = run_body(corpus, db, "full", args.set)
    v2, changes = mutate(notes, spare, 0.01, 0.005, 0.005)
    write_notes(v2)
    inc = run_body(corpus, db, "incremental", args.set)
    same = run_body(corpus, db, "unchanged", args.set)
    rows = []
    for label, r in (("full re-embed (empty table)", full), ("incremental: 1% changed, 0.5% deleted, 0.5% added", inc),
                     ("unchanged: 0% changed", same)):
        c, d = r["counts"], r["durations"]
        ratio = d["job"] / full["durations"]["job"]
        phases = ", ".join(f"{k} {v:.1f}" for k, v in d.items() if k not in ("job", "total"))
        rows.append(f"| {label} | {c['documents_in_corpus']} | {c['chunks_in_corpus']} | {c['documents_new']} / "
                    f"{c['documents_changed']} / {c['documents_deleted']} | {c['chunks_embedded']} | {d['job']:.1f} | "
                    f"{ratio:.1%} | {phases} |")
    return "\n".join([
        f"- corpus: {len(notes)} PMC-Patients notes, {n_chunks} chunks of <= 32 tokens; mutation {changes}",
        "",
        "| run | docs | chunks | docs new / changed / deleted | chunks embedded | job s | vs full | phases (s) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"- targets: incremental <= 5% of full, unchanged <= 2% of full; measured "
        f"{inc['durations']['job'] / full['durations']['job']:.1%} and {same['durations']['job'] / full['durations']['job']:.1%}",
    ])


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _make_table(uri: str, n_chunks: int, chunks_per_doc: int, dim: int) -> None:
    """A table with n_chunks rows of random vectors, written by Ray tasks (the driver holds none of it)."""
    import lance
    import ray

    from medembed import schema as S

    @ray.remote(num_cpus=1)
    def part(start: int, stop: int) -> list:
        import numpy as np
        import pyarrow as pa
        from lance.fragment import write_fragments

        rng = np.random.default_rng(start)
        docs = [f"doc{i // chunks_per_doc:08d}" for i in range(start, stop)]
        idx = [i % chunks_per_doc for i in range(start, stop)]
        n = stop - start
        t = pa.table({S.CHUNK_ID: [S.chunk_id(d, k) for d, k in zip(docs, idx)], S.DOC_ID: docs,
                      S.CHUNK_INDEX: pa.array(idx, pa.int32()), S.TITLE: [""] * n, S.TEXT: [""] * n,
                      S.METADATA: ["{}"] * n, S.VECTOR: S.vectors_to_arrow(rng.random((n, dim), dtype=np.float32)),
                      S.MODEL_ID: ["random"] * n,
                      S.CONTENT_HASH: [S.content_hash(d, str(k)) for d, k in zip(docs, idx)],
                      S.N_TOKENS: pa.array([8] * n, pa.int32()), S.EMBEDDED_AT: pa.nulls(n, pa.timestamp("us", tz="UTC")),
                      S.DOC_HASH: [S.content_hash(d) for d in docs],
                      S.DOC_CHUNKS: pa.array([chunks_per_doc] * n, pa.int32())})
        return [f.to_json() for f in write_fragments(t, uri, schema=S.table_schema(dim, "random", doc_hash=True))]

    step = 100_000
    frags = ray.get([part.remote(s, min(s + step, n_chunks)) for s in range(0, n_chunks, step)])
    from lance.fragment import FragmentMetadata

    meta = [FragmentMetadata.from_json(json.dumps(f)) for fs in frags for f in fs]
    lance.LanceDataset.commit(uri, lance.LanceOperation.Overwrite(S.table_schema(dim, "random", doc_hash=True), meta))


def bench_detect(args: argparse.Namespace) -> str:
    import lance
    import ray

    from medembed import schema as S
    from medembed.config import RayConfig
    from medembed.index.diff import diff_hashes
    from medembed.runtime.ray_setup import init_ray

    per_doc, n = 4, args.detect_chunks
    uri = str(WORK / "detect" / "t.lance")
    shutil.rmtree(WORK / "detect", ignore_errors=True)
    init_ray(RayConfig())
    t0 = time.perf_counter()
    _make_table(uri, n, per_doc, 32)
    build_s = time.perf_counter() - t0
    n_docs = n // per_doc

    @ray.remote(num_cpus=1)
    def corpus_block(start: int, stop: int):
        import pyarrow as pa

        ids, sigs = [], []
        for i in range(start, stop):
            d = f"doc{i:08d}"
            if i % 200 == 1:  # 0.5% deleted
                continue
            ids.append(d)
            sigs.append(S.content_hash(d, "changed") if i % 100 == 0 else S.content_hash(d))  # 1% changed
        if start == 0:  # 0.5% added
            ids += [f"new{i:08d}" for i in range(n_docs // 200)]
            sigs += ["x"] * (n_docs // 200)
        return pa.table({S.DOC_ID: ids, S.DOC_HASH: sigs, S.SOURCE: [""] * len(ids)})

    step = 50_000
    blocks = [corpus_block.remote(s, min(s + step, n_docs)) for s in range(0, n_docs, step)]
    ray.wait(blocks, num_returns=len(blocks))
    rss0 = _peak_rss_mib()
    t0 = time.perf_counter()
    diff = diff_hashes(blocks, uri, lance.dataset(uri).version, partitions=args.partitions)
    detect_s = time.perf_counter() - t0
    rss1 = _peak_rss_mib()
    return "\n".join([
        f"- table: {n} chunks ({n_docs} documents x {per_doc}), random 32-d vectors, written in {build_s:.1f} s",
        f"- change detection (`diff_hashes`, {args.partitions} partitions): **{detect_s:.1f} s**; "
        f"result {diff.counts}",
        f"- driver peak RSS (ru_maxrss): {rss0:.0f} MiB before the diff, {rss1:.0f} MiB after "
        f"(+{rss1 - rss0:.0f} MiB); the driver holds the ids of changed and deleted documents only "
        f"({len(diff.changed) + len(diff.deleted)} ids)",
    ])


def header(cmdline: str) -> str:
    return section_header(SECTION, cmdline).lstrip("\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=20_000, help="corpus size in chunks for (a)")
    p.add_argument("--detect-chunks", type=int, default=1_000_000, help="table size for (b)")
    p.add_argument("--detect-only", action="store_true")
    p.add_argument("--skip-detect", action="store_true")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--set", action="append", default=[], help="extra job config overrides")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parts = []
    if not args.detect_only:
        parts.append(bench_incremental(args))
    if not args.skip_detect:
        parts.append(bench_detect(args))
    text = header("python bench/reembed_incremental.py " + " ".join(argv if argv is not None else sys.argv[1:])) + \
        "\n\n" + "\n\n".join(parts) + "\n"
    sys.stdout.write(text)
    if not args.no_append:
        WORK.mkdir(parents=True, exist_ok=True)
        (WORK / f"results-{int(time.time())}.md").write_text(text)
        append_section(text, echo=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
