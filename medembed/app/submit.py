"""The Ray job-API client behind `medembed submit` and `medembed jobs list|logs|stop|status` (their argparse wiring
is in ``medembed.app.cli``): run jobs on a Ray cluster.

``submit`` checks the config here (an invalid one fails before anything is uploaded), uploads the working
dir with the runtime env of ``cluster/runtime_env.yaml``, prints the submission id, then follows the
job's logs until it ends and exits 0 (succeeded), 1 (failed) or 3 (stopped); ``--no-wait`` returns
right after submitting.

Authentication: Ray 2.60 clusters use token auth. The token is read from ``RAY_AUTH_TOKEN``, else the
file named by ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token`` (Ray's own order) and sent as a bearer
header; it is never printed or logged. Credentials never go into the job's runtime env (Ray stores it in
its job table and shows it in the dashboard): ``--env`` refuses secret-looking names; clusters get
secrets from their nodes' environment (Kubernetes Secrets, IAM roles).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from medembed.config import ConfigError, find_config, load_config

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
RUNTIME_ENV = Path("cluster") / "runtime_env.yaml"
SECRET_NAME = re.compile(r"(_KEY$|_KEY_|SECRET|_TOKEN$|TOKEN_|PASSWORD|CREDENTIAL)", re.I)
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class SubmitError(RuntimeError):
    """A submission that cannot be made as asked; the message says what to change."""


# --- pieces (pure, tested without a cluster) -----------------------------------------------------------------
def auth_token() -> str | None:
    """The Ray auth token, in Ray's order: RAY_AUTH_TOKEN, the file at RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def auth_headers() -> dict[str, str]:
    token = auth_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def resolve_address(address: str | None) -> str:
    """--address, else RAY_ADDRESS when it is an http(s) URL, else the dashboard on localhost."""
    addr = address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    if not addr.startswith(("http://", "https://")):
        raise SubmitError(f"the job API address must be the dashboard URL, e.g. {DEFAULT_ADDRESS} (got {addr!r}; "
                          "a GCS address like HOST:6379 is not the job API)")
    return addr.rstrip("/")


def parse_env(pairs: list[str]) -> dict[str, str]:
    """``--env KEY=VALUE`` pairs for the job's runtime env; refuses names that look like credentials."""
    out: dict[str, str] = {}
    for p in pairs:
        if "=" not in p:
            raise SubmitError(f"--env {p!r} must look like NAME=VALUE")
        k, v = p.split("=", 1)
        if SECRET_NAME.search(k):
            raise SubmitError(f"--env {k}: credentials never go in a job's runtime env (Ray records it in its job "
                              "table and dashboard); give them to the cluster's nodes (Kubernetes Secret, IAM role)")
        out[k] = v
    return out


def runtime_env(working_dir: Path, env_file: Path | None, extra_env: dict[str, str]) -> dict[str, Any]:
    """The runtime env of a submission: ``env_file`` (default <working_dir>/cluster/runtime_env.yaml) plus
    the working dir and ``extra_env``."""
    path = env_file or working_dir / RUNTIME_ENV
    env: dict[str, Any] = {}
    if path.is_file():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise SubmitError(f"runtime env file {path} must hold a mapping")
        env = loaded
    elif env_file is not None:
        raise SubmitError(f"runtime env file not found: {env_file}")
    leaked = [k for k in env.get("env_vars") or {} if SECRET_NAME.search(k)]
    if leaked:
        raise SubmitError(f"runtime env file {path} sets {leaked}: credentials never go in a runtime env")
    env["working_dir"] = str(working_dir)
    env["env_vars"] = {**(env.get("env_vars") or {}), **extra_env}
    return env


def config_argument(config: str | None, working_dir: Path) -> str | None:
    """The ``--config`` the remote driver gets: a shipped config name as is, a file relative to the working dir
    (uploaded with it). A file outside the working dir would not exist on the cluster."""
    if config is None:
        return None
    p = Path(os.path.expanduser(config))
    if p.is_file():
        try:
            return p.resolve().relative_to(working_dir.resolve()).as_posix()
        except ValueError:
            raise SubmitError(f"config {config} is outside the working dir {working_dir}: the cluster would not "
                              "see it; move it inside or pass --working-dir") from None
    find_config(config)  # a shipped name, else ConfigError naming the choices
    return config


def entrypoint(driver: str, config: str | None, overrides: list[str], verbose: bool = False) -> str:
    """``python jobs/<name>.py --config C --set k=v ...``, shell-quoted."""
    argv = ["python", driver]
    if config:
        argv += ["--config", config]
    for ov in overrides:
        argv += ["--set", ov]
    if verbose:
        argv.append("--verbose")
    return shlex.join(argv)


def driver_path(working_dir: Path, job_name: str) -> str:
    """The driver of a job, relative to the working dir: ``jobs/<name>.py`` (one name per job)."""
    driver = f"jobs/{job_name}.py"
    if not (working_dir / driver).is_file():
        raise SubmitError(f"{working_dir} has no driver for job {job_name} ({driver}): run from the repository root "
                          "or pass --working-dir")
    return driver


def exit_code(status: str) -> int:
    return {"SUCCEEDED": EXIT_OK, "STOPPED": EXIT_STOPPED}.get(status, EXIT_FAILED)


# --- talking to the cluster ------------------------------------------------------------------------------------
def client(address: str | None):
    from ray.job_submission import JobSubmissionClient

    addr = resolve_address(address)
    try:
        return JobSubmissionClient(addr, headers=auth_headers())
    except Exception as e:  # connection refused, 401/403 (Ray formats auth errors), not a Ray dashboard
        raise SubmitError(f"cannot reach the Ray job API at {addr}: {e}") from None


def _status(c, job_id: str) -> str:
    return str(c.get_job_status(job_id).value)


def follow(c, job_id: str, out=None, poll_s: float = 1.0) -> str:
    """Stream the job's logs to ``out`` until it ends; return its final status."""
    out = out or sys.stdout

    async def tail() -> None:
        async for lines in c.tail_job_logs(job_id):
            out.write(lines)
            out.flush()

    try:
        asyncio.run(tail())
    except Exception as e:  # the log stream broke (proxy, restart): fall back to polling the status
        log.warning("log stream of %s ended early (%s); polling its status", job_id, e)
    status = _status(c, job_id)
    while status not in TERMINAL:
        time.sleep(poll_s)
        status = _status(c, job_id)
    return status


def submit(job_name: str, *, config: str | None = None, overrides: list[str] | None = None, working_dir: str = ".",
           address: str | None = None, runtime_env_file: str | None = None, env: list[str] | None = None,
           submission_id: str | None = None, verbose: bool = False, wait: bool = True) -> int:
    """Check the config here, submit ``jobs/<name>.py`` with the working dir, print the submission id; with
    ``wait``, follow the logs and return the job's exit code."""
    from medembed.app.registry import by_name
    from medembed.app.runner import config_checks
    from medembed.runtime.artifacts import new_run_id

    job = by_name(job_name)
    overrides = list(overrides or [])
    wd = Path(working_dir).resolve()
    driver = driver_path(wd, job.name)
    config = config_argument(config or job.default_config, wd)
    try:  # fail here, before uploading anything, on an invalid config
        load_config(job.config_class(), (wd / config) if (wd / config).is_file() else config, overrides,
                    checks=config_checks())
    except ConfigError as e:
        raise SubmitError(str(e)) from None
    renv = runtime_env(wd, Path(runtime_env_file) if runtime_env_file else None, parse_env(env or []))
    c = client(address)
    job_id = c.submit_job(entrypoint=entrypoint(driver, config, overrides, verbose), runtime_env=renv,
                          submission_id=submission_id or new_run_id(job.name), metadata={"medembed_job": job.command})
    sys.stdout.write(f"{job_id}\n")
    sys.stdout.flush()
    log.info("submitted %s as %s to %s", job.command, job_id, c.get_address())
    if not wait:
        log.info("follow it with: medembed jobs logs %s --follow --address %s", job_id, c.get_address())
        return EXIT_OK
    try:
        status = follow(c, job_id)
    except KeyboardInterrupt:
        log.warning("stopped following; %s keeps running (medembed jobs stop %s)", job_id, job_id)
        return EXIT_STOPPED
    log.info("job %s %s", job_id, status.lower())
    return exit_code(status)


def jobs_list(address: str | None = None) -> int:
    jobs = client(address).list_jobs()
    jobs.sort(key=lambda j: j.start_time or 0)
    for j in jobs:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(j.start_time / 1000)) if j.start_time else "-"
        sys.stdout.write(f"{j.submission_id or j.job_id}\t{j.status.value}\t{started}\t{j.entrypoint}\n")
    return EXIT_OK


def jobs_logs(job_id: str, address: str | None = None, follow_logs: bool = False) -> int:
    c = client(address)
    if follow_logs:
        return exit_code(follow(c, job_id))
    sys.stdout.write(c.get_job_logs(job_id))
    return EXIT_OK


def jobs_status(job_id: str, address: str | None = None) -> int:
    c = client(address)
    info = c.get_job_info(job_id)
    sys.stdout.write(f"{info.status.value}\n")
    if info.message:
        sys.stdout.write(f"{info.message}\n")
    return exit_code(info.status.value) if info.status.value in TERMINAL else EXIT_OK


def jobs_stop(job_id: str, address: str | None = None, wait: bool = False, timeout: float = 60.0) -> int:
    c = client(address)
    stopped = c.stop_job(job_id)
    if not stopped:
        sys.stdout.write(f"{job_id} was not running ({_status(c, job_id)})\n")
        return EXIT_OK
    if wait:
        deadline = time.monotonic() + timeout
        status = _status(c, job_id)
        while status not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.5)
            status = _status(c, job_id)
        sys.stdout.write(f"{job_id} {status}\n")
        return EXIT_OK if status in TERMINAL else EXIT_FAILED
    sys.stdout.write(f"{job_id} stopping\n")
    return EXIT_OK
