"""Optional MLflow tracking and Model Registry (``pip install -e ".[tracking]"``, ``tracking.mlflow_uri``).

Off by default (``tracking.mlflow_uri: null``): every function here is then a no-op and MLflow is never
imported. With it on:

- every job run is an MLflow run (:func:`start_job`, called by ``app.runner``; it ends when the run
  manifest finishes): params are the resolved config flattened, tags the run id, job, git commit and
  medembed version, metrics the manifest's numeric counts, durations and throughput, artifacts the manifest
  and the quarantine summary;
- a pipeline run is the parent of one nested run per stage (:func:`start_stage`, :func:`nested_run`,
  :func:`reused_stage`);
- job bodies log into the innermost run with :func:`log_metrics` / :func:`log_artifacts`, and Ray Train's
  rank 0 logs its steps with the client API (:func:`worker_target`, :class:`StepLogger`);
- promotion registers the candidate (sentence-transformers flavor) and moves the alias only when the gate
  passes (:func:`register_candidate`); ``model.name=models:/<name>@<alias>`` (or ``models:/<name>/<version>``)
  resolves through the registry into ``model.cache_dir``, once per version (:func:`registry_model`).

Secrets never reach MLflow: config fields named like a credential (key, token, secret, password, ...) are
left out of params and artifacts, URL user-info is masked, and values of secret-named environment variables
are masked wherever they would appear.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medembed.config import TrackingConfig
from medembed.runtime.storage import DEFAULT_STORAGE, Storage, fill_cache_folder

log = logging.getLogger(__name__)

MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"
INSTALL_HINT = 'MLflow tracking needs mlflow: pip install -e ".[tracking]"'
MASK = "***"
# a field or variable named like a credential is never logged (config holds none by design; this is the backstop):
# one of its words (split at _ - . and camelCase) is a credential word, or its last word is "token"
# (hf_token, access_token; not max_tokens or token_budget, which are sizes)
SECRET_WORDS = frozenset({"key", "apikey", "secret", "password", "passwd", "pwd", "credential", "credentials",
                          "auth", "authorization", "cookie", "bearer"})


def is_secret_name(name: str) -> bool:
    words = [w.lower() for w in re.split(r"[_\-.\s/]+|(?<=[a-z])(?=[A-Z])", str(name)) if w]
    return bool(words) and (any(w in SECRET_WORDS for w in words) or words[-1] == "token")


URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
BATCH = 100  # MLflow's limit on params per log_batch call
FLAVOR_FOLDER = "model.sentence_transformer"  # where mlflow.sentence_transformers saves the model folder


# --------------------------------------------------------------------------------------------- secrets

def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-named environment variables (long enough to be a credential), longest first."""
    env = os.environ if environ is None else environ
    vals = {v for k, v in env.items() if is_secret_name(k) and v and len(v) >= 6}
    return sorted(vals, key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with URL user-info and the values of secret-named environment variables masked."""
    text = URL_USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", text)
    for s in secret_values() if secrets is None else secrets:
        text = text.replace(s, MASK)
    return text


def scrub(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of a JSON-like object without secret-named keys, with secret values masked."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, Mapping):
        return {k: scrub(v, secrets) for k, v in obj.items() if not is_secret_name(str(k))}
    if isinstance(obj, list | tuple):
        return [scrub(v, secrets) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    return obj


def flatten(obj: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key, sep))
        else:
            out[key] = v
    return out


def config_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The resolved config as MLflow params: flattened, credential-named fields left out, values masked."""
    secrets = secret_values()
    out = {}
    for k, v in flatten(scrub(config, secrets)).items():
        if any(is_secret_name(part) for part in k.split(".")):
            continue
        text = v if isinstance(v, str) else json.dumps(v, default=str)
        out[k[:250]] = redact_text(text, secrets)[:MAX_PARAM_CHARS]
    return out


def numeric_metrics(obj: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as ``a/b/c`` metrics (bools as 0/1; strings and None left out)."""
    out = {}
    for k, v in flatten(obj, prefix, sep="/").items():
        if isinstance(v, bool):
            out[k] = float(v)
        elif isinstance(v, int | float) and v == v:  # not NaN
            out[k] = float(v)
    return {re.sub(r"[^A-Za-z0-9_\-. :/]", "_", k): v for k, v in out.items()}


# --------------------------------------------------------------------------------------------- runs

@dataclass
class Run:
    """One MLflow run this process started (client API: no fluent global state)."""

    client: Any
    run_id: str
    uri: str
    experiment_id: str
    name: str
    secrets: list[str] = field(default_factory=list)

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step or 0)) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, redact_text(str(v), self.secrets)[:5000]) for k, v in tags.items() if v is not None]
        if items:
            self.client.log_batch(self.run_id, tags=items)

    def log_json(self, obj: Any, name: str) -> None:
        """A JSON artifact, scrubbed of secret-named keys and secret values."""
        self.client.log_text(self.run_id, json.dumps(scrub(obj, self.secrets), indent=2, default=str), name)

    def log_file(self, path: str, artifact_path: str | None = None, storage: Storage = DEFAULT_STORAGE) -> None:
        """A file (local or ``s3://``) as an artifact; text files are logged with secret values masked."""
        from medembed.runtime.storage import is_remote

        name = path.rstrip("/").rsplit("/", 1)[-1]
        target = f"{artifact_path}/{name}" if artifact_path else name
        if name.endswith((".json", ".md", ".txt", ".jsonl", ".csv", ".log")):
            fs, p = storage.fs(path)
            with fs.open(p, "r", encoding="utf-8") as f:
                self.client.log_text(self.run_id, redact_text(f.read(), self.secrets), target)
            return
        if not is_remote(path):
            self.client.log_artifact(self.run_id, path, artifact_path)
            return
        with tempfile.TemporaryDirectory(prefix="medembed-mlflow-") as tmp:
            fs, p = storage.fs(path)
            fs.get(p, os.path.join(tmp, name))
            self.client.log_artifact(self.run_id, os.path.join(tmp, name), artifact_path)

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


_STACK: list[Run] = []  # the runs this process has open: a job run, then nested stage runs


def enabled(tracking: TrackingConfig | None) -> bool:
    return tracking is not None and bool(tracking.mlflow_uri)


def current() -> Run | None:
    """The innermost open run (a pipeline stage's nested run, else the job's run), or None when tracking is off."""
    return _STACK[-1] if _STACK else None


def _mlflow():
    """mlflow, imported on first use; its INFO lines and download bars kept off the console (--verbose keeps them)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        import mlflow
    except ImportError as e:
        raise RuntimeError(INSTALL_HINT) from e
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


def default_artifact_location(uri: str) -> str | None:
    """``sqlite:///DIR/x.db`` -> ``DIR/mlartifacts`` (absolute): artifacts next to the store, not in the cwd."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):]).expanduser().resolve()
        return str(db.parent / "mlartifacts")
    return None


def experiment_id(client: Any, tracking: TrackingConfig) -> str:
    exp = client.get_experiment_by_name(tracking.experiment)
    if exp is not None:
        return exp.experiment_id
    location = tracking.artifact_location or default_artifact_location(tracking.mlflow_uri or "")
    try:
        return client.create_experiment(tracking.experiment, artifact_location=location)
    except Exception:  # created meanwhile by another process
        exp = client.get_experiment_by_name(tracking.experiment)
        if exp is None:
            raise
        return exp.experiment_id


def activate(tracking: TrackingConfig) -> str:
    """Point MLflow (this process, and Ray workers started after this) at the store; returns the URI."""
    uri = tracking.mlflow_uri or ""
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    _mlflow().set_tracking_uri(uri)
    os.environ[MLFLOW_URI_ENV] = uri  # models:/ resolution in this process and in local Ray workers
    return uri


def git_commit() -> str | None:
    """The commit of the medembed checkout (None when it is not a git checkout, e.g. on a cluster node)."""
    if os.environ.get("MEDEMBED_GIT_COMMIT"):
        return os.environ["MEDEMBED_GIT_COMMIT"]
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _start(tracking: TrackingConfig, name: str, tags: Mapping[str, Any], parent: Run | None = None) -> Run:
    _mlflow()
    from mlflow import MlflowClient

    uri = activate(tracking) if parent is None else parent.uri
    client = MlflowClient(tracking_uri=uri) if parent is None else parent.client
    exp = experiment_id(client, tracking) if parent is None else parent.experiment_id
    all_tags = {k: str(v) for k, v in tags.items() if v is not None}
    if parent is not None:
        all_tags["mlflow.parentRunId"] = parent.run_id
    run = client.create_run(exp, run_name=name, tags=all_tags)
    return Run(client, run.info.run_id, uri, exp, name, secret_values())


def _job_tags(job: str, run_id: str) -> dict[str, Any]:
    from importlib import metadata

    commit = git_commit()
    try:
        version = metadata.version("medembed")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"medembed.run_id": run_id, "medembed.job": job, "medembed.version": version, "git_commit": commit,
            "mlflow.source.git.commit": commit}


STATUS = {"succeeded": "FINISHED", "succeeded_with_quarantine": "FINISHED", "failed": "FAILED",
          "interrupted": "KILLED"}


def log_manifest(run: Run, manifest: Any, storage: Storage = DEFAULT_STORAGE) -> None:
    """The manifest's counts, durations and throughput as metrics; the manifest and quarantine summary as artifacts."""
    data = manifest.data
    metrics = numeric_metrics(data.get("counts") or {})
    metrics.update(numeric_metrics(data.get("durations_s") or {}, "duration_s"))
    metrics.update(numeric_metrics(data.get("throughput") or {}, "throughput"))
    if metrics:
        run.log_metrics(metrics)
    run.set_tags({"medembed.status": data.get("status"), "medembed.manifest": manifest.path("manifest.json")})
    run.log_json(data, "manifest.json")
    by_reason = (data.get("counts") or {}).get("quarantine_by_reason")
    if by_reason is not None or data.get("quarantine_dir"):
        run.log_json({"quarantined": (data.get("counts") or {}).get("quarantined"), "by_reason": by_reason or {},
                      "quarantine_dir": data.get("quarantine_dir")}, "quarantine_summary.json")


def _end_with_manifest(run: Run, storage: Storage = DEFAULT_STORAGE) -> Any:
    """A manifest ``on_finish`` hook: log the manifest into ``run`` and end it with the manifest's status."""

    def hook(manifest: Any) -> None:
        if run in _STACK:
            _STACK.remove(run)
        try:
            log_manifest(run, manifest, storage)
        except Exception as e:  # tracking never turns a finished job into a failed one
            log.warning("MLflow: could not log the manifest of run %s: %s", run.run_id, e)
        try:
            run.end(STATUS.get(str(manifest.data.get("status")), "FAILED"))
        except Exception as e:
            log.warning("MLflow: could not end run %s: %s", run.run_id, e)

    return hook


def start_job(tracking: TrackingConfig | None, job: str, manifest: Any, config: Mapping[str, Any],
              storage: Storage = DEFAULT_STORAGE) -> Run | None:
    """Start the MLflow run of one job run (None when tracking is off); it ends when ``manifest`` finishes.

    A store that cannot be reached (or mlflow not installed) is a warning: the job runs without tracking.
    """
    if not enabled(tracking):
        return None
    assert tracking is not None
    try:
        run = _start(tracking, manifest.run_id, _job_tags(job, manifest.run_id))
        run.log_params(config_params(config))
    except Exception as e:
        log.warning("MLflow tracking is configured (tracking.mlflow_uri=%s) but no run could be started; the job "
                    "runs without tracking: %s", redact_text(str(tracking.mlflow_uri)), e)
        return None
    manifest.set("mlflow", {"tracking_uri": redact_text(run.uri), "experiment_id": run.experiment_id,
                            "run_id": run.run_id})
    log.info("MLflow run %s (experiment %s, %s)", run.run_id, tracking.experiment, redact_text(run.uri))
    _STACK.append(run)
    manifest.on_finish(_end_with_manifest(run, storage))
    return run


def start_stage(name: str, manifest: Any, config: Mapping[str, Any] | None = None, storage: Storage = DEFAULT_STORAGE) -> Run | None:
    """A nested run for a pipeline stage run as a job (None without a current run); ends when ``manifest`` finishes."""
    parent = current()
    if parent is None:
        return None
    try:
        run = _start(TrackingConfig(mlflow_uri=parent.uri), name,
                     {"medembed.stage": name, "medembed.run_id": manifest.run_id, "medembed.stage_status": "ran"},
                     parent)
        if config:
            run.log_params(config_params(config))
    except Exception as e:
        log.warning("MLflow: no nested run for stage %s: %s", name, e)
        return None
    manifest.set("mlflow", {"tracking_uri": redact_text(run.uri), "experiment_id": run.experiment_id,
                            "run_id": run.run_id, "parent_run_id": parent.run_id})
    _STACK.append(run)
    manifest.on_finish(_end_with_manifest(run, storage))
    return run


@contextmanager
def nested_run(name: str, tags: Mapping[str, Any] | None = None,
               params: Mapping[str, Any] | None = None) -> Iterator[Run | None]:
    """A nested run under the current one for a step without a manifest (the pipeline's promote step)."""
    parent = current()
    if parent is None:
        yield None
        return
    run = _start(TrackingConfig(mlflow_uri=parent.uri), name, {"medembed.stage": name, **(tags or {})}, parent)
    if params:
        run.log_params(config_params(params))
    _STACK.append(run)
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        _STACK.remove(run)
        run.end(status)


def reused_stage(name: str, record: Mapping[str, Any]) -> None:
    """A pipeline stage whose output was reused: a nested run that says so (no work, no metrics)."""
    try:
        with nested_run(name, tags={"medembed.stage_status": "reused", "medembed.reused_from": record.get("run_id"),
                                    "medembed.artifact": record.get("artifact")}):
            pass
    except Exception as e:
        log.warning("MLflow: no nested run for reused stage %s: %s", name, e)


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Numeric metrics into the current run (no-op when tracking is off)."""
    run = current()
    if run is not None:
        got = numeric_metrics(dict(metrics))
        if got:
            run.log_metrics(got, step)


def log_artifacts(paths: list[str], artifact_path: str | None = None, storage: Storage = DEFAULT_STORAGE) -> None:
    """Files (local or ``s3://``) into the current run; a file that cannot be logged is a warning."""
    run = current()
    if run is None:
        return
    for p in paths:
        try:
            run.log_file(p, artifact_path, storage)
        except Exception as e:
            log.warning("MLflow: could not log %s: %s", p, e)


# --------------------------------------------------------------------------------------------- Ray Train workers

def worker_target() -> dict[str, str] | None:
    """What a Ray Train worker needs to log into the current run (``{"uri", "run_id"}``), or None."""
    run = current()
    return {"uri": run.uri, "run_id": run.run_id} if run is not None else None


class StepLogger:
    """Rank 0's step metrics into the driver's run, with the client API; the first failure disables it (warned)."""

    def __init__(self, target: Mapping[str, str] | None):
        self.target = dict(target) if target else None
        self.client: Any = None

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.target is None:
            return
        try:
            import time

            from mlflow import MlflowClient
            from mlflow.entities import Metric

            if self.client is None:
                self.client = MlflowClient(tracking_uri=self.target["uri"])
            now = int(time.time() * 1000)
            self.client.log_batch(self.target["run_id"],
                                  metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])
        except Exception as e:  # e.g. a sqlite store that this node cannot reach: training goes on
            log.warning("MLflow: step metrics not logged from this worker (%s); the job's run still gets the "
                        "final metrics", e)
            self.target = None


# --------------------------------------------------------------------------------------------- Model Registry

MODELS_PREFIX = "models:/"


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` -> (NAME, ALIAS, None); ``models:/NAME/VERSION`` -> (NAME, None, VERSION)."""
    rest = uri[len(MODELS_PREFIX):].strip("/")
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        if name and alias and "/" not in alias:
            return name, alias, None
    elif "/" in rest:
        name, version = rest.rsplit("/", 1)
        if name and version.isdigit():
            return name, None, version
    raise ValueError(f"model.name={uri!r}: expected models:/<registered model>@<alias> or "
                     "models:/<registered model>/<version>")


def registry_model(uri: str, cache_dir: str) -> tuple[Path, str | None, dict[str, Any]]:
    """Resolve ``models:/NAME@ALIAS`` (or ``/VERSION``) in the Model Registry and download that version's model
    folder into ``cache_dir`` once (atomically). Returns (folder, the revision recorded at registration or None,
    version info). The store is ``MLFLOW_TRACKING_URI`` (set from ``tracking.mlflow_uri`` by the job runner)."""
    name, alias, version = parse_model_uri(uri)
    store = os.environ.get(MLFLOW_URI_ENV)
    if not store:
        raise ValueError(f"model.name={uri!r} names an MLflow registry model: set tracking.mlflow_uri (or "
                         f"{MLFLOW_URI_ENV}) to the store that holds it")
    _mlflow()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store, registry_uri=store)
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except Exception as e:
        raise ValueError(f"model.name={uri!r}: not found in the registry at {redact_text(store)}: {e}") from None
    info = {"name": name, "alias": alias, "version": str(mv.version), "run_id": mv.run_id, "source": mv.source}
    cache = Path(os.path.expanduser(cache_dir))
    key = hashlib.sha256(f"{store}|{name}|{mv.version}".encode()).hexdigest()[:16]
    target = cache / f"mlflow_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}_v{mv.version}_{key}"
    def fill(tmp: Path) -> None:
        import mlflow.artifacts

        mlflow.artifacts.download_artifacts(artifact_uri=f"{MODELS_PREFIX}{name}/{mv.version}", dst_path=str(tmp),
                                            tracking_uri=store)
        _restore_card(tmp)

    if fill_cache_folder(target, fill, json.dumps(info)):
        log.info("downloaded %s (version %s) to %s", uri, mv.version, target)
    folder = target / FLAVOR_FOLDER if (target / FLAVOR_FOLDER).is_dir() else target
    meta = _mlmodel_metadata(target)
    log.info("%s -> %s version %s (%s)", uri, name, mv.version, folder)
    return folder, meta.get("medembed_revision"), info


def _mlmodel_metadata(folder: Path) -> dict[str, Any]:
    import yaml

    p = folder / "MLmodel"
    if not p.exists():
        return {}
    return (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("metadata") or {}


def _restore_card(folder: Path) -> None:
    """The medembed card (``medembed_model.json``) the flavor does not save, from the version's metadata."""
    from medembed.schema import CARD_FILE

    text = _mlmodel_metadata(folder).get("medembed_card")
    model = folder / FLAVOR_FOLDER
    if text and model.is_dir() and not (model / CARD_FILE).exists():
        (model / CARD_FILE).write_text(text, encoding="utf-8")


def _requirements() -> list[str]:
    """What loading the registered model needs (local version labels such as torch's ``+cpu`` dropped)."""
    from importlib import metadata

    out = []
    for name in ("sentence-transformers", "transformers", "torch"):
        try:
            out.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def register_candidate(tracking: TrackingConfig | None, model_dir: str, revision: str, decision: Mapping[str, Any],
                       pipeline_run_id: str) -> dict[str, Any] | None:
    """Log the candidate into the current run (sentence-transformers flavor, with its saved prompts), register it
    as a new version of ``tracking.registered_model`` tagged with the gate's decision, and move
    ``tracking.alias`` to it only when the gate passed. Returns what was done (None when tracking is off)."""
    run = current()
    if run is None or not enabled(tracking):
        return None
    assert tracking is not None
    _mlflow()
    import mlflow
    import mlflow.sentence_transformers
    from sentence_transformers import SentenceTransformer

    from medembed.schema import CARD_FILE

    card_path = Path(model_dir) / CARD_FILE
    card_text = card_path.read_text(encoding="utf-8") if card_path.exists() else None
    model_id = json.loads(card_text)["model_id"] if card_text else Path(model_dir).name
    st = SentenceTransformer(model_dir, device="cpu")
    client = run.client
    with mlflow.start_run(run_id=run.run_id):  # log_model needs the fluent API's active run
        logged = mlflow.sentence_transformers.log_model(
            st, name="model", registered_model_name=tracking.registered_model, pip_requirements=_requirements(),
            metadata={"medembed_model_id": model_id, "medembed_revision": revision, "medembed_card": card_text,
                      "query_prompt": st.prompts.get("query", ""), "document_prompt": st.prompts.get("document", "")})
    client.update_run(run.run_id, status="RUNNING")  # the fluent block's exit ended the run; nested_run ends it
    version = str(logged.registered_model_version)
    promote = bool(decision.get("promote"))
    tags = {"medembed.model_id": model_id, "medembed.revision": revision, "medembed.pipeline_run_id": pipeline_run_id,
            "medembed.gate_passed": str(promote).lower(), "medembed.gate_metric": decision.get("metric"),
            "medembed.gate_reason": decision.get("reason")}
    for k, v in tags.items():
        if v is not None:
            client.set_model_version_tag(tracking.registered_model, version, k, redact_text(str(v))[:5000])
    previous = None
    try:
        previous = str(client.get_model_version_by_alias(tracking.registered_model, tracking.alias).version)
    except Exception:  # no version holds the alias yet
        previous = None
    if promote:
        client.set_registered_model_alias(tracking.registered_model, tracking.alias, version)
    out = {"name": tracking.registered_model, "version": version, "alias": tracking.alias, "alias_moved": promote,
           "alias_version": version if promote else previous, "previous_alias_version": previous,
           "model_uri": f"{MODELS_PREFIX}{tracking.registered_model}@{tracking.alias}"}
    run.set_tags({"medembed.registered_version": version, "medembed.alias_moved": str(promote).lower()})
    log.info("registered %s version %s; alias %s %s", tracking.registered_model, version, tracking.alias,
             f"moved to version {version}" if promote else f"left at version {previous}")
    return out


def pin_model_uri(uri: str) -> str:
    """``models:/NAME@ALIAS`` -> ``models:/NAME/VERSION`` (the version the alias points at now)."""
    name, alias, version = parse_model_uri(uri)
    if alias is None:
        return uri
    store = os.environ.get(MLFLOW_URI_ENV)
    if not store:
        raise ValueError(f"model.name={uri!r} names an MLflow registry model: set tracking.mlflow_uri (or "
                         f"{MLFLOW_URI_ENV}) to the store that holds it")
    _mlflow()
    from mlflow import MlflowClient

    mv = MlflowClient(tracking_uri=store, registry_uri=store).get_model_version_by_alias(name, alias)
    log.info("%s is version %s of %s: this run uses %s%s/%s", uri, mv.version, name, MODELS_PREFIX, name, mv.version)
    return f"{MODELS_PREFIX}{name}/{mv.version}"
