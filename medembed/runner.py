"""What every job driver does around the library call: config, logging, Ray, run manifest."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import Any, Callable, TypeVar

from pydantic import BaseModel

from medembed.config import ConfigError, OutputConfig, RayConfig, load_config
from medembed.manifest import RunManifest

log = logging.getLogger(__name__)

C = TypeVar("C", bound=BaseModel)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "botocore", "s3fs", "aiobotocore", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_config_args(p: argparse.ArgumentParser, default_config: str | None) -> None:
    p.add_argument("--config", "-c", default=default_config,
                   help=f"YAML config file (default: {default_config or 'built-in defaults'})")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set model.name=BAAI/bge-base-en-v1.5 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def run_job(job: str, cls: type[C], args: argparse.Namespace, body: Callable[[C, RunManifest], dict[str, Any]]) -> int:
    """Load config (failing before any work), connect Ray, run ``body``, always write the manifest."""
    setup_logging(getattr(args, "verbose", False))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        cfg = load_config(cls, args.config, args.overrides)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    if args.print_config:
        sys.stdout.write(cfg.model_dump_json(indent=2) + "\n")
        return 0
    out: OutputConfig = getattr(cfg, "output", OutputConfig())
    manifest = RunManifest(job, out.run_dir, cfg.model_dump(mode="json"), run_id=out.run_name)
    try:
        from medembed.raysetup import init_ray

        manifest.set("ray", init_ray(getattr(cfg, "ray", RayConfig())))
        with manifest.timed("job"):
            counts = body(cfg, manifest)
        manifest.finish("succeeded")
        log.info("%s finished: %s", job, counts)
        log.info("manifest: %s", manifest.path("manifest.json"))
        return 0
    except KeyboardInterrupt:
        manifest.finish("interrupted")
        return 130
    except Exception as e:  # the manifest records the failure; the exit code tells the scheduler
        log.error("%s failed: %s", job, e)
        log.debug("%s", traceback.format_exc())
        manifest.finish("failed", error=f"{type(e).__name__}: {e}")
        return 1
