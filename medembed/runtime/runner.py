"""What every job does around its body: config, logging, Ray, one run id, the run manifest."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import TYPE_CHECKING

from medembed.config import ConfigError, OutputConfig, RayConfig, load_config
from medembed.runtime.manifest import RunManifest

if TYPE_CHECKING:
    from medembed.jobs import Job

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "botocore", "s3fs", "aiobotocore", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_config_args(p: argparse.ArgumentParser, default_config: str | None) -> None:
    p.add_argument("--config", "-c", default=default_config,
                   help=f"YAML config file, or the name of a shipped config (default: {default_config})")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set model.name=BAAI/bge-base-en-v1.5 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def job_parser(job: Job) -> argparse.ArgumentParser:
    """The argument parser of a job's thin driver (``python jobs/<name>.py``)."""
    p = argparse.ArgumentParser(prog=f"jobs/{job.name}.py", description=job.description)
    add_config_args(p, job.default_config)
    return p


def run_job(job: Job, args: argparse.Namespace) -> int:
    """Load config (failing before any work), connect Ray, run the body, always write the manifest."""
    setup_logging(getattr(args, "verbose", False))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        cfg = load_config(job.config_class(), args.config, args.overrides)
    except ConfigError as e:
        log.error("%s", e)
        return EXIT_CONFIG
    if args.print_config:
        sys.stdout.write(cfg.model_dump_json(indent=2) + "\n")
        return EXIT_OK
    out: OutputConfig = getattr(cfg, "output", OutputConfig())
    manifest = RunManifest(job.name, out.run_dir, cfg.model_dump(mode="json"), run_id=out.run_name)
    from medembed.runtime import tracking  # MLflow (optional): the run ends when the manifest finishes

    tracking.start_job(getattr(cfg, "tracking", None), job.name, manifest, manifest.data["config"],
                       getattr(cfg, "s3", None))
    try:
        from medembed.runtime.ray_setup import init_ray

        manifest.set("ray", init_ray(getattr(cfg, "ray", RayConfig()), ray_train=job.ray_train))
        with manifest.timed("job"):
            counts = job.body_function()(cfg, manifest)
        status = manifest.data.get("exit_status", "succeeded")
        manifest.finish(status)
        log.info("%s finished (%s): %s", job.name, status, counts)
        log.info("manifest: %s", manifest.path("manifest.json"))
        return int(manifest.data.get("exit_code", EXIT_OK))
    except KeyboardInterrupt:
        manifest.finish("interrupted")
        return EXIT_INTERRUPTED
    except Exception as e:  # the manifest records the failure; the exit code tells the scheduler
        log.error("%s failed: %s", job.name, e)
        log.debug("%s", traceback.format_exc())
        manifest.finish("failed", error=f"{type(e).__name__}: {e}")
        return int(getattr(e, "exit_code", EXIT_FAILED))


def main_for(name: str, argv: list[str] | None = None) -> int:
    """Entry point of a thin driver: ``sys.exit(main_for("embed_corpus"))``."""
    from medembed.jobs import by_name

    job = by_name(name)
    return run_job(job, job_parser(job).parse_args(argv))
