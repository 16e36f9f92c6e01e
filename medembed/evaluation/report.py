"""Evaluation results: one MTEB-style JSON per (model, dataset), comparison tables and a bar chart.

A result looks like an MTEB task result::

    {"dataset_name": "scifact", "split": "test", "model": {"name": ..., "revision": ...},
     "scores": {"test": [{"ndcg_at_10": ..., ..., "main_score": <ndcg_at_10>,
                          "hf_subset": "default", "languages": ["eng-Latn"]}]},
     "evaluation_time": seconds, "num_queries": n, "num_documents": n, "medembed_version": "..."}

Results are read and written with fsspec (local paths or ``s3://``). matplotlib is imported only
by the chart functions.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fsspec

from medembed import __version__

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

MAIN_METRIC = "ndcg_at_10"
NO_REVISION = "no_revision_available"  # MTEB's folder name for a model without a revision
RESULT_KEYS = ("dataset_name", "split", "model", "scores", "evaluation_time", "num_queries", "num_documents",
               "medembed_version")


# --- results JSON ------------------------------------------------------------------------------

def make_result(*, dataset_name: str, split: str, model_name: str, model_revision: str | None,
                scores: Mapping[str, float], evaluation_time: float, num_queries: int, num_documents: int,
                main_metric: str = MAIN_METRIC, languages: Sequence[str] = ("eng-Latn",),
                hf_subset: str = "default") -> dict[str, Any]:
    """One result dict; ``scores`` are the mean metrics (e.g. ``RetrievalScores.mean``)."""
    if main_metric not in scores:
        raise KeyError(f"main metric {main_metric!r} is not among the scores ({sorted(scores)})")
    entry = {k: float(v) for k, v in scores.items()}
    entry.update(main_score=float(scores[main_metric]), hf_subset=hf_subset, languages=list(languages))
    return {
        "dataset_name": dataset_name,
        "split": split,
        "model": {"name": model_name, "revision": model_revision or None},
        "scores": {split: [entry]},
        "evaluation_time": float(evaluation_time),
        "num_queries": int(num_queries),
        "num_documents": int(num_documents),
        "medembed_version": __version__,
    }


def result_path(root: str, model_name: str, model_revision: str | None, dataset_name: str) -> str:
    """``<root>/<model name, '/' -> '__'>/<revision>/<dataset>.json``, MTEB's results layout."""
    return "/".join([root.rstrip("/"), model_name.replace("/", "__"), model_revision or NO_REVISION,
                     f"{dataset_name}.json"])


def write_result(result: Mapping[str, Any], uri: str, *, storage_options: Mapping[str, Any] | None = None) -> str:
    """Write ``result`` as indented JSON to ``uri`` (parent folders are created); returns ``uri``."""
    _check_result(result, uri)
    with _open_for_writing(uri, storage_options, "w") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
        f.write("\n")
    log.info("wrote %s", uri)
    return uri


def read_result(uri: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read one result JSON, checking that it has the keys of :func:`make_result`."""
    fs, path = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
    with fs.open(path, "r", encoding="utf-8") as f:
        result = json.load(f)
    _check_result(result, uri)
    return result


def read_results(root: str, *, storage_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every result JSON under ``root`` (any depth), in path order."""
    fs, path = fsspec.core.url_to_fs(root, **dict(storage_options or {}))
    out = []
    for p in sorted(fs.glob(f"{path.rstrip('/')}/**/*.json")):
        with fs.open(p, "r", encoding="utf-8") as f:
            result = json.load(f)
        _check_result(result, p)
        out.append(result)
    return out


def score_of(result: Mapping[str, Any], metric: str = MAIN_METRIC, split: str | None = None) -> float:
    """``metric`` of a result for ``split`` (default: the result's own split), subset ``default``."""
    split = split or result["split"]
    entries = result["scores"].get(split)
    if not entries:
        raise KeyError(f"{result['model']['name']} / {result['dataset_name']}: no scores for split {split!r}")
    entry = next((e for e in entries if e.get("hf_subset", "default") == "default"), entries[0])
    if metric not in entry:
        raise KeyError(f"{result['model']['name']} / {result['dataset_name']}: no metric {metric!r}")
    return float(entry[metric])


def _open_for_writing(uri: str, storage_options: Mapping[str, Any] | None, mode: str) -> Any:
    """An fsspec file open for writing at ``uri``, its parent folder created (a no-op on object stores)."""
    fs, path = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    return fs.open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"}))


def _check_result(result: Any, where: str) -> None:
    missing = [k for k in RESULT_KEYS if not isinstance(result, Mapping) or k not in result]
    if missing:
        raise ValueError(f"{where}: not a medembed evaluation result (missing {missing})")


# --- comparison table --------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """Models x datasets on one metric. ``values[model][dataset]``; ``average[model]`` is None when
    the model lacks a dataset; deltas are against ``baseline`` (None when there is none)."""

    metric: str
    models: list[str]
    datasets: list[str]
    values: dict[str, dict[str, float]]
    average: dict[str, float | None]
    baseline: str | None

    def delta(self, model: str, dataset: str | None = None) -> float | None:
        """``model - baseline`` on ``dataset`` (None: on the average); None when either is missing."""
        if self.baseline is None or model == self.baseline:
            return None
        if dataset is None:
            a, b = self.average[model], self.average[self.baseline]
        else:
            a, b = self.values[model].get(dataset), self.values[self.baseline].get(dataset)
        return None if a is None or b is None else a - b


def compare(results: Iterable[Mapping[str, Any]], *, metric: str = MAIN_METRIC, baseline: str | None = None,
            split: str | None = None, datasets: Sequence[str] | None = None) -> Comparison:
    """Collect ``metric`` per model (``model.name``) and dataset from results.

    Models and datasets keep their first-seen order, the baseline first; ``datasets`` restricts and
    orders the columns. Two results for the same model, dataset and split are an error.
    """
    values: dict[str, dict[str, float]] = {}
    seen: list[str] = []
    for r in results:
        model, dataset = r["model"]["name"], r["dataset_name"]
        if split is not None and split not in r["scores"]:
            continue
        if dataset in values.get(model, {}):
            raise ValueError(f"two results for model {model!r} on dataset {dataset!r}")
        values.setdefault(model, {})[dataset] = score_of(r, metric, split)
        if dataset not in seen:
            seen.append(dataset)
    columns = list(datasets) if datasets is not None else seen
    models = list(values)
    if baseline is not None:
        if baseline not in values:
            raise ValueError(f"baseline {baseline!r} has no results (models: {models})")
        models.remove(baseline)
        models.insert(0, baseline)
    values = {m: {d: v for d, v in values[m].items() if d in columns} for m in models}
    average = {m: (math.fsum(values[m][d] for d in columns) / len(columns)
                   if columns and all(d in values[m] for d in columns) else None) for m in models}
    return Comparison(metric=metric, models=models, datasets=columns, values=values, average=average,
                      baseline=baseline)


def comparison_rows(cmp: Comparison, *, scale: float = 100.0, digits: int = 2) -> list[list[str]]:
    """Header and rows of the table: score x ``scale`` with ``digits`` decimals, delta in brackets."""
    def cell(model: str, dataset: str | None) -> str:
        value = cmp.average[model] if dataset is None else cmp.values[model].get(dataset)
        if value is None:
            return "-"
        text = f"{value * scale:.{digits}f}"
        d = cmp.delta(model, dataset)
        return text if d is None else f"{text} ({d * scale:+.{digits}f})"

    header = ["model", *cmp.datasets, "average"]
    return [header] + [[m, *(cell(m, d) for d in cmp.datasets), cell(m, None)] for m in cmp.models]


def to_markdown(cmp: Comparison, *, scale: float = 100.0, digits: int = 2) -> str:
    """The comparison as a GitHub markdown table, with a caption naming metric and baseline."""
    header, *rows = comparison_rows(cmp, scale=scale, digits=digits)
    lines = [_caption(cmp, scale), "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_text(cmp: Comparison, *, scale: float = 100.0, digits: int = 2) -> str:
    """The comparison as an aligned plain-text table (model column left, numbers right)."""
    table = comparison_rows(cmp, scale=scale, digits=digits)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    lines = [_caption(cmp, scale), fmt(table[0]), "  ".join("-" * w for w in widths)]
    return "\n".join(lines + [fmt(r) for r in table[1:]]) + "\n"


def metric_label(metric: str) -> str:
    """Display name of a score key: ``ndcg_at_10`` -> ``nDCG@10``; other keys are returned as they are."""
    name, _, k = metric.partition("_at_")
    pretty = {"ndcg": "nDCG", "map": "MAP", "recall": "Recall", "precision": "P", "mrr": "MRR"}
    return f"{pretty[name]}@{k}" if k and name in pretty else metric


def _caption(cmp: Comparison, scale: float) -> str:
    unit = "" if scale == 1.0 else f" (x{scale:g})"
    base = f"; deltas vs {cmp.baseline}" if cmp.baseline else ""
    return f"{metric_label(cmp.metric)}{unit}{base}"


# --- chart -------------------------------------------------------------------------------------

def plot_comparison(cmp: Comparison, *, title: str | None = None, include_average: bool = False,
                    scale: float = 100.0, digits: int = 1) -> Figure:
    """Grouped bar chart: one group per dataset (and "average" if asked), one bar per model, with labels.

    Returns a matplotlib ``Figure`` not attached to pyplot (Agg canvas); save it with :func:`save_png`.
    Missing values leave a gap (a zero-height bar without label) so each group has one bar per model.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = list(cmp.datasets) + (["average"] if include_average else [])
    n_models = max(len(cmp.models), 1)
    width = 0.8 / n_models
    fig = Figure(figsize=(max(6.0, 1.1 * len(groups) * (1 + 0.35 * n_models)), 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, model in enumerate(cmp.models):
        raw = [cmp.values[model].get(d) for d in cmp.datasets] + ([cmp.average[model]] if include_average else [])
        heights = [0.0 if v is None else v * scale for v in raw]
        xs = [j + (i - (n_models - 1) / 2) * width for j in range(len(groups))]
        bars = ax.bar(xs, heights, width * 0.95, label=model)
        labels = ["" if v is None else f"{v * scale:.{digits}f}" for v in raw]
        ax.bar_label(bars, labels=labels, padding=2, fontsize=7, rotation=90 if n_models > 3 else 0)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(_caption(cmp, scale).split(";")[0])
    top = max((v * scale for m in cmp.models for v in cmp.values[m].values()), default=0.0)
    ax.set_ylim(0, (top or scale) * 1.18)
    ax.set_title(title or f"{metric_label(cmp.metric)} by dataset")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def save_png(fig: Figure, uri: str, *, storage_options: Mapping[str, Any] | None = None) -> str:
    """Write ``fig`` as PNG to ``uri`` (local or ``s3://``); returns ``uri``."""
    with _open_for_writing(uri, storage_options, "wb") as f:
        fig.savefig(f, format="png", bbox_inches="tight")
    log.info("wrote %s", uri)
    return uri
