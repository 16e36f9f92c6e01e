"""Connecting to Ray: an existing cluster (``ray job submit``, RAY_ADDRESS) or a local instance on loopback.

A local instance binds ``ray.node_ip_address`` (127.0.0.2 by default): Ray rewrites 127.0.0.1 to the
machine's network address, other loopback addresses stay, so nothing of a local run leaves the machine.
"""

from __future__ import annotations

import json
import logging
import os

import ray

from medembed.config import RayConfig

log = logging.getLogger(__name__)

# Non-secret variables worth forwarding to workers of a local instance started here.
_FORWARD_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_DATASETS_OFFLINE",
                "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "TOKENIZERS_PARALLELISM")


def _job_env_var_keys() -> set[str]:
    """Env var keys the runtime_env of a submitted job (``ray job submit``) already sets.

    Ray refuses to merge a driver's ``ray.init(runtime_env=...)`` with the job's runtime env when
    both set the same variable, so those keys are left to the job (the submitter's choice wins).
    """
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return set()
    try:
        return set((json.loads(raw).get("runtime_env") or {}).get("env_vars") or {})
    except (ValueError, AttributeError):
        return set()


LOCAL_START_ATTEMPTS = 3


def _start_local(cfg: RayConfig, kwargs: dict[str, object], dashboard: bool) -> None:
    """Start a local instance; on a loaded machine Ray's fixed node-registration deadline can pass, so retry."""
    for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
        log.info("starting a local Ray instance on %s%s", cfg.node_ip_address, " with its dashboard" if dashboard else "")
        try:
            ray.init(num_cpus=cfg.num_cpus, include_dashboard=dashboard, dashboard_host="127.0.0.1",
                     _node_ip_address=cfg.node_ip_address, **kwargs)
            return
        except Exception as e:
            if "timed out during startup" not in str(e) or attempt == LOCAL_START_ATTEMPTS:
                raise
            log.warning("local Ray start timed out (attempt %d of %d, machine busy?); retrying", attempt,
                        LOCAL_START_ATTEMPTS)
            ray.shutdown()


def cluster_address(cfg: RayConfig) -> str | None:
    """The existing cluster a job connects to (``ray.address``, else ``RAY_ADDRESS``); None: a local instance."""
    return cfg.address or os.environ.get("RAY_ADDRESS")


def require_resources(what: str, needs: dict[str, tuple[float, str]], cfg: RayConfig,
                      each: dict[str, tuple[float, str]] | None = None) -> None:
    """Refuse a plan the cluster cannot place (Ray would wait for it forever), naming the fields to change.

    ``needs`` maps a resource ("CPU", "GPU") to (amount in all, the config fields that set it); ``each`` the
    same for one worker or actor, which must fit on a single node. On an existing cluster an autoscaler may
    add nodes: warn instead of failing.
    """
    have = ray.cluster_resources()
    problems = [f"{n:g} {r}s ({fields}) but the cluster has {have.get(r, 0):g}"
                for r, (n, fields) in needs.items() if have.get(r, 0) < n]
    if each:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if not any(all(node.get(r, 0) >= n for r, (n, _) in each.items()) for node in nodes):
            largest = {r: max((node.get(r, 0) for node in nodes), default=0) for r in each}
            short = [f"{n:g} {r}s on one node for each ({fields}) but the largest node has {largest[r]:g}"
                     for r, (n, fields) in each.items() if n > largest[r]]
            problems += short or ["one node with " + " and ".join(f"{n:g} {r}s ({fields})" for r, (n, fields)
                                                                 in each.items() if n > 0) + " for each, and none has all"]
    if not problems:
        return
    msg = f"{what} needs " + "; and ".join(problems)
    if cluster_address(cfg):
        log.warning("%s (waiting for the autoscaler, if any)", msg)
    else:
        raise RuntimeError(msg)


def init_ray(cfg: RayConfig | None = None, ray_train: bool = False) -> dict[str, object]:
    """Connect to (or start) Ray once; return a short description for the run manifest. ``ray_train``: the job
    runs Ray Train, so a local instance starts its dashboard unless ``ray.dashboard`` says otherwise."""
    cfg = cfg or RayConfig()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not ray.is_initialized():
        address = cluster_address(cfg)
        job_keys = _job_env_var_keys()
        env_vars = {k: os.environ[k] for k in _FORWARD_ENV if k in os.environ and k not in job_keys}
        kwargs: dict[str, object] = {"log_to_driver": True}
        if address:
            log.info("connecting to Ray at %s", address)
            ray.init(address=address, runtime_env={"env_vars": env_vars}, **kwargs)
        else:  # a local instance's processes inherit this environment; no runtime env lets its workers be reused
            _start_local(cfg, kwargs, ray_train if cfg.dashboard is None else cfg.dashboard)
    ctx = ray.get_runtime_context()
    res = ray.cluster_resources()
    return {
        "address": cluster_address(cfg) or "local",
        "job_id": ctx.get_job_id(),
        "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
        "node_ips": sorted({n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}),
        "cpus": res.get("CPU", 0),
        "gpus": res.get("GPU", 0),
    }
