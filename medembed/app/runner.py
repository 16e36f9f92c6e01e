"""What every job does around its body: config, logging, Ray, one run id, the run manifest, the exit code.

``run_job`` runs a registered job from its command line (``medembed <job>``, ``python jobs/<name>.py``). The body
itself runs through ``medembed.runtime.execute.run_body``, the same function the pipeline runs each stage through.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import traceback
from typing import TYPE_CHECKING

from medembed.config import ConfigError, OutputConfig, RayConfig, load_config
from medembed.runtime.console import quiet_console, say, setup_logging
from medembed.runtime.execute import run_body
from medembed.runtime.manifest import RunManifest
from medembed.runtime.runs import format_duration
from medembed.runtime.storage import Storage, is_remote

if TYPE_CHECKING:
    from medembed.app.registry import Job

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130
LOG_FILE = "job.log"


def add_config_args(p: argparse.ArgumentParser, default_config: str | None) -> None:
    p.add_argument("--config", "-c", default=default_config,
                   help=f"YAML config file, or the name of a shipped config (default: {default_config})")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set model.name=BAAI/bge-base-en-v1.5 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="debug logging, and Ray's and the libraries' output on the console too (default: the "
                        "console shows progress, stage lines and the summary; everything else goes to the run's "
                        "job.log)")


def job_parser(job: Job) -> argparse.ArgumentParser:
    """The argument parser of a job's thin driver (``python jobs/<name>.py``)."""
    p = argparse.ArgumentParser(prog=f"jobs/{job.name}.py", description=job.description)
    add_config_args(p, job.default_config)
    return p


def config_checks() -> tuple:
    """Checks of a job's raw config before it validates: the benchmark instrument is refused in every ``*_cluster``
    preset (``embedding.instrument.refuse_in_preset``; config, the bottom layer, does not know the instrument)."""
    from medembed.embedding.instrument import refuse_in_preset

    return (refuse_in_preset,)


def run_job(job: Job, args: argparse.Namespace) -> int:
    """Load config (failing before any work), connect Ray, run the body, always write the manifest."""
    setup_logging(getattr(args, "verbose", False))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        cfg = load_config(job.config_class(), args.config, args.overrides, checks=config_checks())
    except ConfigError as e:
        log.error("%s", e)
        return EXIT_CONFIG
    if args.print_config:
        sys.stdout.write(cfg.model_dump_json(indent=2) + "\n")
        return EXIT_OK
    out: OutputConfig = getattr(cfg, "output", OutputConfig())
    storage = Storage.from_config(getattr(cfg, "s3", None))  # the job's one storage context (no secrets in it)
    manifest = RunManifest(job.name, out.run_dir, cfg.model_dump(mode="json"), run_id=out.run_name, storage=storage)
    log_path, remote_log = job_log_path(manifest)
    manifest.set("log_file", remote_log or log_path)
    verbose = getattr(args, "verbose", False)
    with quiet_console(log_path, verbose) as quiet:
        say("%s: run %s (config %s)%s", job.command, manifest.run_id, args.config or "defaults",
            f"; Ray and library logs go to {remote_log or log_path}" if quiet else "")
        from medembed.runtime import tracking  # MLflow (optional): the run ends when the manifest finishes

        if tracking.start_job(getattr(cfg, "tracking", None), job.name, manifest, manifest.data["config"],
                              storage) is not None:
            say("MLflow run %s (experiment %s)", manifest.data["mlflow"]["run_id"], cfg.tracking.experiment)
        code = _run_body(job, cfg, manifest)
        if quiet:
            say("log file: %s", remote_log or log_path)
    if remote_log:
        storage.copy_file(log_path, remote_log)
    return code


def job_log_path(manifest: RunManifest) -> tuple[str, str | None]:
    """The run's log file: ``<run folder>/job.log``; for an ``s3://`` run folder a local file uploaded at the end."""
    target = manifest.path(LOG_FILE)
    if not is_remote(target):
        return target, None
    local = os.path.join(tempfile.gettempdir(), "medembed-logs", manifest.run_id.replace("/", "__"), LOG_FILE)
    return local, target


def _brief(counts: object, most: int = 6) -> str:
    """The first few scalar counts, in words (``documents accepted 30, chunks written 30``)."""
    if not isinstance(counts, dict):
        return ""
    items = [f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) and not isinstance(v, bool) else
             f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if isinstance(v, (int, float, str, bool))]
    return f" ({', '.join(items[:most])})" if items else ""


def _run_body(job: Job, cfg: object, manifest: RunManifest) -> int:
    """Connect Ray and run the job body (``run_body`` finishes the manifest); returns the exit code."""
    from medembed.runtime.ray_setup import init_ray

    def connect() -> None:
        manifest.set("ray", init_ray(getattr(cfg, "ray", RayConfig()), ray_train=job.ray_train))

    try:
        counts = run_body(job.body_function(), cfg, manifest, before=connect)
    except KeyboardInterrupt:
        say("%s interrupted; manifest: %s", job.command, manifest.path("manifest.json"))
        return EXIT_INTERRUPTED
    except Exception as e:  # the manifest records the failure; the exit code tells the scheduler
        log.error("%s failed: %s", job.name, e)
        log.debug("%s", traceback.format_exc())
        say("manifest: %s", manifest.path("manifest.json"))
        return int(getattr(e, "exit_code", EXIT_FAILED))
    log.info("%s counts: %s", job.name, counts)
    say("%s %s in %s%s; manifest: %s", job.command, manifest.data["status"],
        format_duration(manifest.data["durations_s"]["total"]), _brief(counts), manifest.path("manifest.json"))
    return int(manifest.data.get("exit_code", EXIT_OK))


def main_for(name: str, argv: list[str] | None = None) -> int:
    """Entry point of a thin driver: ``sys.exit(main_for("embed"))``."""
    from medembed.app.registry import by_name

    job = by_name(name)
    return run_job(job, job_parser(job).parse_args(argv))
