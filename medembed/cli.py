"""`medembed` command line: the same library calls the Ray jobs make."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap

from medembed import __version__

log = logging.getLogger(__name__)

DESCRIPTION = """\
medembed turns medical text into search-ready embeddings on Ray.

  medembed embed                  embed a corpus into a LanceDB table (bundled sample by default)
  medembed search "query"         search a table (vector, full-text or hybrid)
  medembed table-info             show a table's model, dimension, rows and indexes
  medembed generate-pairs         synthetic (query, passage) pairs from clinical notes
  medembed mine-negatives         hard negatives for pairs -> (query, positive, negatives) triplets

Every job subcommand takes --config FILE.yaml and repeatable --set section.field=value
overrides, writes a JSON run manifest under output.run_dir, and runs on a local Ray instance
unless RAY_ADDRESS or ray.address points at a cluster.
"""


def _cmd_embed(args: argparse.Namespace) -> int:
    from medembed.config import EmbedJobConfig
    from medembed.pipeline import embed_corpus
    from medembed.runner import run_job

    return run_job("embed_corpus", EmbedJobConfig, args, embed_corpus)


def _open_table(args: argparse.Namespace):
    from medembed.config import S3Config
    from medembed.store import connect

    s3 = S3Config(endpoint_url=args.s3_endpoint) if args.s3_endpoint else None
    db = connect(args.db, s3)
    listed = db.list_tables()
    names = list(listed.tables) if hasattr(listed, "tables") else list(listed)
    table = args.table
    if table is None:
        if len(names) != 1:
            raise SystemExit(f"error: {args.db} holds {len(names)} tables {names}; pick one with --table")
        table = names[0]
    if table not in names:
        raise SystemExit(f"error: no table {table!r} in {args.db}; tables: {names}")
    return db.open_table(table), table


def _cmd_search(args: argparse.Namespace) -> int:
    from medembed import schema as S
    from medembed.config import EmbedConfig, ModelConfig
    from medembed.runner import setup_logging
    from medembed.store import search_table, table_metadata

    setup_logging(args.verbose)
    tbl, name = _open_table(args)
    qvec = None
    if args.mode in ("vector", "hybrid"):
        from medembed.embed import build_encoder

        md = table_metadata(tbl.to_lance())
        model_name = args.model or md.get(S.META_MODEL_ID, "")
        if model_name == "sentence-transformers/all-MiniLM-L6-v2" and not args.model:
            model_name = "bundled:all-MiniLM-L6-v2"
        enc = build_encoder(ModelConfig(name=model_name), EmbedConfig(torch_threads=None))
        if str(enc.dim) != md.get(S.META_DIM):
            raise SystemExit(f"error: model {model_name} has dim {enc.dim}, table {name} has {md.get(S.META_DIM)}")
        qvec = enc.encode_queries([args.query])[0]
    hits = search_table(tbl, args.mode, args.query, qvec, args.k)
    if args.json:
        sys.stdout.write(json.dumps([h.__dict__ for h in hits], indent=2) + "\n")
        return 0
    width = 100
    sys.stdout.write(f"{args.mode} search in {name}: {args.query!r}\n")
    for rank, h in enumerate(hits, 1):
        snippet = " ".join(h.text.split())
        sys.stdout.write(f"{rank:>3}. {h.score:8.4f}  {h.doc_id}  ({h.chunk_id})  {h.title[:60]}\n")
        sys.stdout.write(textwrap.indent(textwrap.shorten(snippet, width=width * 2, placeholder=" ..."), "      ") + "\n")
    if not hits:
        sys.stdout.write("no hits\n")
    return 0


def _cmd_table_info(args: argparse.Namespace) -> int:
    from medembed.store import table_metadata

    tbl, name = _open_table(args)
    info = {"table": name, "rows": tbl.count_rows(), "metadata": table_metadata(tbl.to_lance()),
            "indexes": [{"name": i.name, "type": i.index_type, "columns": i.columns} for i in tbl.list_indices()],
            "version": tbl.version}
    sys.stdout.write(json.dumps(info, indent=2) + "\n")
    return 0


def _add_table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default="./lancedb", help="LanceDB folder or s3:// URI (default ./lancedb)")
    p.add_argument("--table", "-t", default=None, help="table name (default: the only table in --db)")
    p.add_argument("--s3-endpoint", default=None, help="S3 endpoint for s3:// databases (credentials from env)")
    p.add_argument("--verbose", "-v", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    from medembed.runner import add_config_args

    p = argparse.ArgumentParser(prog="medembed", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"medembed {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    e = sub.add_parser("embed", help="embed a corpus into a LanceDB table",
                       description="Read a corpus (JSONL/CSV/Parquet, local, s3:// or a HF dataset), chunk it with "
                                   "the model's tokenizer, embed every chunk on a Ray actor pool and write a LanceDB "
                                   "table with full-text (and, past store.ann_min_rows, ANN) indexes. Re-runs only "
                                   "embed new or changed chunks. Bad rows go to <run_dir>/<run>/quarantine/.")
    add_config_args(e, "jobs/configs/embed_local.yaml")
    e.set_defaults(func=_cmd_embed)

    s = sub.add_parser("search", help="search a table",
                       description="Top-k chunks for a query. vector: cosine similarity with the table's model "
                                   "(query prompt applied); fts: BM25 over text; hybrid: reciprocal-rank fusion.")
    s.add_argument("query", help="the search text")
    _add_table_args(s)
    s.add_argument("--mode", choices=["vector", "fts", "hybrid"], default="vector")
    s.add_argument("-k", type=int, default=10, help="number of hits (default 10)")
    s.add_argument("--model", default=None, help="query encoder (default: the model recorded in the table)")
    s.add_argument("--json", action="store_true", help="print hits as JSON")
    s.set_defaults(func=_cmd_search)

    t = sub.add_parser("table-info", help="show a table's model, rows and indexes")
    _add_table_args(t)
    t.set_defaults(func=_cmd_table_info)

    _register_optional(sub, add_config_args)
    return p


def _register_optional(sub, add_config_args) -> None:
    """Subcommands whose modules come with later stages (pairs, negatives)."""
    try:
        from medembed.synth.cli import register as register_synth
    except ImportError:
        register_synth = None
    if register_synth:
        register_synth(sub, add_config_args)
    try:
        from medembed.mining_cli import register as register_mining
    except ImportError:
        register_mining = None
    if register_mining:
        register_mining(sub, add_config_args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
