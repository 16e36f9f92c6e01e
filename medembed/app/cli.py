"""`medembed` command line: one parser built from the job registry (``app.registry``), plus table commands (search,
table-info, rollback), runs (list, show) and clusters (submit, jobs: the argparse side of ``app.submit``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap

from medembed import __version__
from medembed.app.submit import DEFAULT_ADDRESS, EXIT_USAGE, RUNTIME_ENV, SubmitError

log = logging.getLogger(__name__)

DESCRIPTION = """\
medembed turns medical text into search-ready embeddings, and better medical embedding models, on Ray.

Jobs (each takes --config NAME_OR_FILE, repeatable --set section.field=value, --print-config;
each writes a JSON run manifest under output.run_dir and runs on a local Ray instance unless
RAY_ADDRESS or ray.address points at a cluster):
{jobs}

Tables:
  search "query"                   search a table (vector, exact, ann, fts or hybrid)
  table-info                       show a table's model, dimension, rows and indexes
  rollback --name NAME             return a serving name to its previous table or version

Runs (from the JSON manifests under a run folder, local or s3://):
  runs list                        runs newest first: id, job, status, start, duration, main output
  runs show RUN_ID                 one run: counts, quarantine by reason, stage times, gate, paths

Clusters (Ray job API; token from RAY_AUTH_TOKEN or ~/.ray/auth_token):
  submit JOB --address URL         submit a job with this working dir, follow its logs, exit with its status
  jobs list|logs|status|stop       the cluster's jobs

Shipped configs: {configs}
"""


def _cmd_job(args: argparse.Namespace) -> int:
    from medembed.app.runner import run_job

    return run_job(args.job, args)
def _storage(args: argparse.Namespace):
    """The storage context of ``--s3-endpoint`` (credentials: the environment)."""
    from medembed.runtime.storage import Storage

    return Storage(endpoint_url=args.s3_endpoint)




def _retriever(args: argparse.Namespace, with_encoder: bool):
    from medembed import schema as S
    from medembed.config import EmbedConfig, ModelConfig
    from medembed.index.search import Retriever

    storage = _storage(args)
    try:
        retriever = Retriever.open(args.db, args.table, storage=storage)
    except LookupError as e:
        raise SystemExit(f"error: {e}") from None
    if with_encoder:
        from medembed.embedding.encoders import build_encoder

        md = retriever.metadata
        model_name = args.model or md.get(S.META_MODEL_ID, "")
        if model_name == "sentence-transformers/all-MiniLM-L6-v2" and not args.model:
            model_name = "bundled:all-MiniLM-L6-v2"
        enc = build_encoder(ModelConfig(name=model_name), EmbedConfig(torch_threads=None), storage)
        if str(enc.dim) != md.get(S.META_DIM):
            raise SystemExit(f"error: model {model_name} has dim {enc.dim}, table {retriever.name} has "
                             f"{md.get(S.META_DIM)}")
        retriever.encoder = enc
    return retriever


def _cmd_search(args: argparse.Namespace) -> int:
    from medembed.runtime.console import setup_logging

    setup_logging(args.verbose)
    retriever = _retriever(args, with_encoder=args.mode != "fts")
    hits = retriever.search(args.query, args.k, args.mode)[0]
    if args.json:
        sys.stdout.write(json.dumps([h.__dict__ for h in hits], indent=2) + "\n")
        return 0
    sys.stdout.write(f"{args.mode} search in {retriever.name}: {args.query!r}\n")
    for rank, h in enumerate(hits, 1):
        snippet = " ".join(h.text.split())
        sys.stdout.write(f"{rank:>3}. {h.score:8.4f}  {h.doc_id}  ({h.chunk_id})  {h.title[:60]}\n")
        sys.stdout.write(textwrap.indent(textwrap.shorten(snippet, width=200, placeholder=" ..."), "      ") + "\n")
    if not hits:
        sys.stdout.write("no hits\n")
    return 0


def _cmd_table_info(args: argparse.Namespace) -> int:
    retriever = _retriever(args, with_encoder=False)
    tbl = retriever.tbl
    info = {"table": retriever.name, "rows": tbl.count_rows(), "metadata": retriever.metadata,
            "indexes": [{"name": i.name, "type": i.index_type, "columns": i.columns} for i in tbl.list_indices()],
            "version": tbl.version}
    sys.stdout.write(json.dumps(info, indent=2) + "\n")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from medembed.index import serving
    from medembed.index.lease import LeaseHeld, WriterLease
    from medembed.runtime.artifacts import new_run_id
    from medembed.runtime.console import setup_logging

    setup_logging(args.verbose)
    storage = _storage(args)
    try:  # the writer lease: a rollback never races a running re-embedding
        with WriterLease(args.db, args.name, new_run_id("rollback"), storage=storage).acquire(args.wait):
            before, after = serving.rollback(args.db, args.name, storage)
    except LeaseHeld as e:
        log.error("%s", e)
        return e.exit_code
    except LookupError as e:
        raise SystemExit(f"error: {e}") from None
    sys.stdout.write(json.dumps({"name": args.name, "before": before.current.__dict__,
                                 "after": after.current.__dict__}, indent=2) + "\n")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from medembed.runtime import runs

    storage = _storage(args)
    if args.runs_command == "show":
        try:
            manifest, path = runs.find_run(args.run_dir, args.run_id, storage)
        except LookupError as e:
            raise SystemExit(f"error: {e}") from None
        s = runs.summary(manifest, path)
        sys.stdout.write((json.dumps(s, indent=2, default=str) if args.json else runs.format_summary(s)) + "\n")
        return 0
    rows, unreadable = runs.list_runs(args.run_dir, storage, job=args.job, status=args.status, stages=args.stages,
                                      limit=args.limit)
    for problem in unreadable:
        log.warning("skipped %s", problem)
    if args.json:
        sys.stdout.write(json.dumps([r.to_dict() for r in rows], indent=2) + "\n")
    elif rows:
        sys.stdout.write(runs.format_table(rows) + "\n")
    else:
        sys.stdout.write(f"no runs under {args.run_dir}" + (" matching the filters" if args.job or args.status
                                                            else "") + "\n")
    return 0


def _add_table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default="./lancedb", help="LanceDB folder or s3:// URI (default ./lancedb)")
    p.add_argument("--table", "-t", default=None, help="table name (default: the only table in --db)")
    p.add_argument("--s3-endpoint", default=None, help="S3 endpoint for s3:// databases (credentials from env)")
    p.add_argument("--verbose", "-v", action="store_true")


# --- clusters: submit, jobs list|logs|status|stop (the client is app.submit) ---------------------------------------
def _submit_cmd(fn):
    def wrapped(args: argparse.Namespace) -> int:
        from medembed.runtime.console import setup_logging

        setup_logging(getattr(args, "verbose", False))
        try:
            return fn(args)
        except (SubmitError, KeyError) as e:
            log.error("%s", e.args[0] if isinstance(e, KeyError) else e)
            return EXIT_USAGE
    return wrapped


def _submit(args: argparse.Namespace) -> int:
    from medembed.app import submit

    return submit.submit(args.job, config=args.config, overrides=args.overrides, working_dir=args.working_dir,
                         address=args.address, runtime_env_file=args.runtime_env, env=args.env,
                         submission_id=args.submission_id, verbose=args.verbose, wait=not args.no_wait)


def _jobs(args: argparse.Namespace) -> int:
    from medembed.app import submit

    if args.jobs_command == "list":
        return submit.jobs_list(args.address)
    if args.jobs_command == "logs":
        return submit.jobs_logs(args.job_id, args.address, args.follow)
    if args.jobs_command == "status":
        return submit.jobs_status(args.job_id, args.address)
    return submit.jobs_stop(args.job_id, args.address, args.wait, args.timeout)


def _address_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None, help=f"the cluster's dashboard / job API URL (default: RAY_ADDRESS if "
                   f"it is http(s), else {DEFAULT_ADDRESS}); reach remote clusters through a port-forward or SSH "
                   "tunnel. Token: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")


def _job_command(word: str) -> str:
    """A job's name in either spelling (or a deprecated one) -> its CLI command; unknown words pass to ``choices``."""
    from medembed.app.registry import by_name

    try:
        return by_name(word).command
    except KeyError:
        return word


def add_submit_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``submit`` and ``jobs {list,logs,status,stop}`` to the ``medembed`` parser."""
    from medembed.app.registry import JOBS

    s = sub.add_parser("submit", help="submit a job to a Ray cluster and follow it",
                       description="Submit a job through the Ray job API with this working dir and "
                                   "cluster/runtime_env.yaml, print its id, follow its logs until it ends. Exit "
                                   "status: 0 succeeded, 1 failed, 2 bad arguments or config, 3 stopped.")
    s.add_argument("job", type=_job_command, choices=sorted(j.command for j in JOBS.values()),
                   help="the job to run (its name in either spelling: generate-pairs or generate_pairs)")
    _address_arg(s)
    s.add_argument("--config", "-c", default=None, help="shipped config name or a YAML file inside the working dir "
                   "(default: the job's default config)")
    s.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable)")
    s.add_argument("--working-dir", default=".", help="uploaded as the job's working dir (default: .)")
    s.add_argument("--runtime-env", default=None, help=f"runtime env YAML (default: <working dir>/{RUNTIME_ENV})")
    s.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra non-secret environment variable for the job (repeatable)")
    s.add_argument("--submission-id", default=None, help="default: <job name>-<UTC time>-<6 hex>")
    s.add_argument("--no-wait", action="store_true", help="return after submitting")
    s.add_argument("--verbose", "-v", action="store_true")
    s.set_defaults(func=_submit_cmd(_submit))

    j = sub.add_parser("jobs", help="list, follow, inspect and stop jobs on a Ray cluster")
    jsub = j.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    lp = jsub.add_parser("list", help="every job the cluster knows")
    _address_arg(lp)
    lp.set_defaults(func=_submit_cmd(_jobs))
    for name, helptext in (("logs", "a job's logs"), ("status", "a job's status"), ("stop", "stop a job")):
        p = jsub.add_parser(name, help=helptext)
        p.add_argument("job_id")
        _address_arg(p)
        if name == "logs":
            p.add_argument("--follow", "-f", action="store_true", help="stream until the job ends; exit with its status")
        if name == "stop":
            p.add_argument("--wait", action="store_true", help="wait until it has stopped")
            p.add_argument("--timeout", type=float, default=60.0)
        p.set_defaults(func=_submit_cmd(_jobs))


def build_parser() -> argparse.ArgumentParser:
    from medembed.app.registry import JOBS
    from medembed.app.runner import add_config_args
    from medembed.config import shipped_configs

    jobs = "\n".join(f"  {j.command:<32} {j.help}" for j in JOBS.values())
    p = argparse.ArgumentParser(prog="medembed", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=DESCRIPTION.format(jobs=jobs, configs=", ".join(shipped_configs())))
    p.add_argument("--version", action="version", version=f"medembed {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for job in JOBS.values():
        jp = sub.add_parser(job.command, help=job.help, description=job.description)
        add_config_args(jp, job.default_config)
        jp.set_defaults(func=_cmd_job, job=job)

    s = sub.add_parser("search", help="search a table",
                       description="Top-k chunks for a query. vector: cosine similarity with the table's model "
                                   "(query prompt applied; ANN when the table has a vector index, else exact); "
                                   "exact / ann: force one; fts: BM25 over text; hybrid: reciprocal-rank fusion.")
    s.add_argument("query", help="the search text")
    _add_table_args(s)
    s.add_argument("--mode", choices=["vector", "exact", "ann", "fts", "hybrid"], default="vector")
    s.add_argument("-k", type=int, default=10, help="number of hits (default 10)")
    s.add_argument("--model", default=None, help="query encoder (default: the model recorded in the table)")
    s.add_argument("--json", action="store_true", help="print hits as JSON")
    s.set_defaults(func=_cmd_search)

    t = sub.add_parser("table-info", help="show a table's model, rows and indexes")
    _add_table_args(t)
    t.set_defaults(func=_cmd_table_info)

    r = sub.add_parser("rollback", help="return a serving name to its previous table or version",
                       description="Point a serving name (written by `medembed reembed`) back at the table and "
                                   "version it served before, in one step, holding the writer lease. Exit codes: "
                                   "0 done, 3 a re-embedding run holds the lease.")
    r.add_argument("--db", default="./lancedb", help="LanceDB folder or s3:// URI (default ./lancedb)")
    r.add_argument("--name", required=True, help="the serving name (sync.serving_name / store.corpus_name)")
    r.add_argument("--wait", type=float, default=0.0, help="seconds to wait for a running writer's lease")
    r.add_argument("--s3-endpoint", default=None, help="S3 endpoint for s3:// databases (credentials from env)")
    r.add_argument("--verbose", "-v", action="store_true")
    r.set_defaults(func=_cmd_rollback)

    from medembed.runtime.runs import STATUSES

    runs_p = sub.add_parser("runs", help="list runs and show one, from their manifests",
                            description="Read the run manifests (<run_dir>/<run id>/manifest.json) that every "
                                        "job writes, locally or on s3://.")
    runs_sub = runs_p.add_subparsers(dest="runs_command", metavar="list|show", required=True)
    for name, helptext in (("list", "runs newest first: id, job, status, start, duration, main output"),
                           ("show", "one run's summary: counts, quarantine by reason, stage times, gate, paths")):
        rp = runs_sub.add_parser(name, help=helptext, description=helptext)
        if name == "show":
            rp.add_argument("run_id", help="a run id, or a unique prefix of one")
        else:
            rp.add_argument("--job", default=None, help="only runs of this job (e.g. embed, pipeline)")
            rp.add_argument("--status", default=None, choices=STATUSES, help="only runs with this status")
            rp.add_argument("--stages", action="store_true", help="also list a pipeline's per-stage runs")
            rp.add_argument("--limit", "-n", type=int, default=None, help="at most this many runs")
        rp.add_argument("--run-dir", default="./runs", help="the jobs' output.run_dir, a folder or s3:// URI "
                                                            "(default ./runs)")
        rp.add_argument("--s3-endpoint", default=None, help="S3 endpoint for s3:// run folders (credentials "
                                                            "from env)")
        rp.add_argument("--json", action="store_true", help="print JSON instead of text")
        rp.set_defaults(func=_cmd_runs)

    add_submit_commands(sub)  # submit, jobs list|logs|status|stop (Ray job API)
    return p


def canonical_command(argv: list[str]) -> list[str]:
    """A job command in either spelling (``generate_pairs`` or ``generate-pairs``) becomes the CLI's (``-``); the
    deprecated ``eval`` becomes ``evaluate``, with a deprecation warning."""
    from medembed.app.registry import DEPRECATED_NAMES, JOBS, command_of

    i = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if i is None:
        return argv
    word = argv[i].replace("-", "_")
    if word in JOBS:
        return [*argv[:i], command_of(word), *argv[i + 1:]]
    if word in DEPRECATED_NAMES:
        new = command_of(DEPRECATED_NAMES[word])
        sys.stderr.write(f"WARNING: `medembed {argv[i]}` is deprecated and will be removed in the next release; use "
                         f"`medembed {new}`\n")
        return [*argv[:i], new, *argv[i + 1:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(canonical_command(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
