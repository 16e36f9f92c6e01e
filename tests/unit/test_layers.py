"""Layers hold: no module imports upward, and no two packages import each other (directly or round a circle).

Every module under ``medembed/`` (and the drivers in ``jobs/``) is parsed with ``ast``: module-level AND
function-level imports count (a lazy import is still a dependency); imports under ``if TYPE_CHECKING:`` do not
(they never run). Each module maps to a layer (TEAM.md, README "Architecture tour"):

    L0 contracts   medembed (the package root), schema, config, configs/, data/, sample_corpus
    L1 runtime     runtime/                                    imports L0 only
    L2 libraries   ingest, embedding, index, synth, mining, evaluation, training
                   (sideways among themselves without circles; embedding imports no index or ingest)
    L3 stages      stages/, pipeline/
    L4 jobs        jobs/ (the job bodies)
    L5 app         app/ (registry, runner, submit client, CLI), the deprecated medembed/cli.py, the jobs/*.py drivers

A known violation owned by an open piece of work is listed in ALLOWED / ALLOWED_CYCLES with who removes it; an
entry that no longer happens is reported (a warning) so that the list only shrinks.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from tests.support.paths import REPO

LAYER_OF_PACKAGE = {
    "medembed": 0, "schema": 0, "config": 0, "configs": 0, "data": 0, "sample_corpus": 0,
    "runtime": 1,
    "ingest": 2, "embedding": 2, "index": 2, "synth": 2, "mining": 2, "evaluation": 2, "training": 2,
    "stages": 3, "pipeline": 3,
    "jobs": 4,
    "app": 5, "cli": 5, "drivers": 5,
}
LAYER_NAMES = {0: "L0 contracts", 1: "L1 runtime", 2: "L2 libraries", 3: "L3 stages", 4: "L4 jobs", 5: "L5 app"}
FORBIDDEN_SIDEWAYS = {("embedding", "index"), ("embedding", "ingest")}  # the embedding layer knows models, not tables

# Known violations, each (importing module, imported module), with the piece of work that removes it.
# Shrink this set as those land; it must end empty.
ALLOWED: set[tuple[str, str]] = set()  # (H2's config -> embedding.instrument and H3's embedding -> index/ingest landed)
# Known import circles between packages (frozensets of package names), with who breaks them.
ALLOWED_CYCLES: set[frozenset[str]] = set()


# ------------------------------------------------------------------------------------------------ the checker
def module_name(path: Path, root: Path = REPO) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "jobs":  # the drivers: scripts, not a package
        return "drivers." + ".".join(parts[1:])
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "drivers":
        return "drivers"
    return parts[1] if len(parts) > 1 else parts[0]


def layer_of(module: str) -> int:
    pkg = package_of(module)
    if pkg not in LAYER_OF_PACKAGE:
        raise KeyError(f"{module}: package {pkg!r} is in no layer; add it to LAYER_OF_PACKAGE (and the README tour)")
    return LAYER_OF_PACKAGE[pkg]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(source: str, module: str, known: Iterable[str], is_package: bool = False) -> set[str]:
    """The ``medembed`` modules ``module`` imports anywhere in ``source`` (functions included), except under
    ``if TYPE_CHECKING:``. ``from medembed.x import y`` counts as ``medembed.x.y`` when that is a module."""
    known = set(known)
    out: set[str] = set()
    package = module if is_package else module.rsplit(".", 1)[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "medembed")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] == "medembed":
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    out.add(sub if sub in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    out.discard(module)
    return out


def source_files(root: Path = REPO) -> dict[str, Path]:
    files = {module_name(p, root): p for p in sorted((root / "medembed").rglob("*.py"))}
    files.update({module_name(p, root): p for p in sorted((root / "jobs").glob("*.py"))})
    return files


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    files = source_files(root)
    return {m: imports_of(p.read_text(encoding="utf-8"), m, files, p.name == "__init__.py") for m, p in files.items()}


def upward_imports(graph: Mapping[str, Iterable[str]]) -> set[tuple[str, str]]:
    """(importer, imported) pairs where a module imports a higher layer, or embedding imports index/ingest."""
    bad = set()
    for src, targets in graph.items():
        for dst in targets:
            if layer_of(dst) > layer_of(src) or (package_of(src), package_of(dst)) in FORBIDDEN_SIDEWAYS:
                bad.add((src, dst))
    return bad


def package_cycles(graph: Mapping[str, Iterable[str]]) -> set[frozenset[str]]:
    """Sets of packages that import each other round a circle (strongly connected components of size > 1)."""
    edges: dict[str, set[str]] = {}
    for src, targets in graph.items():
        for dst in targets:
            a, b = package_of(src), package_of(dst)
            if a != b:
                edges.setdefault(a, set()).add(b)
                edges.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def strongconnect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.add(frozenset(comp))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return found


def _describe(pairs: Iterable[tuple[str, str]]) -> str:
    return "\n".join(f"  {s} ({LAYER_NAMES[layer_of(s)]}) imports {d} ({LAYER_NAMES[layer_of(d)]})"
                     for s, d in sorted(pairs))


# ------------------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_module_has_a_layer(graph):
    for module in graph:
        layer_of(module)  # raises naming the module when its package is in no layer


def test_no_module_imports_upward(graph):
    bad = upward_imports(graph)
    new = bad - ALLOWED
    assert not new, "upward imports (move the code down, or the import up):\n" + _describe(new)
    stale = ALLOWED - bad
    if stale:
        warnings.warn(f"ALLOWED entries that no longer happen, remove them: {sorted(stale)}", stacklevel=1)


def test_no_import_circle_between_packages(graph):
    cycles = package_cycles(graph)
    new = cycles - ALLOWED_CYCLES
    assert not new, f"packages importing each other round a circle: {[sorted(c) for c in new]}"
    stale = ALLOWED_CYCLES - cycles
    if stale:
        warnings.warn(f"ALLOWED_CYCLES entries that no longer happen, remove them: {[sorted(c) for c in stale]}",
                      stacklevel=1)


def test_the_checker_catches_an_upward_import_and_a_circle(tmp_path):
    """The checks can fail: a synthetic tree with a runtime module importing a job body (function-level), one
    importing the registry only under TYPE_CHECKING (allowed), and two libraries importing each other."""
    files = {
        "medembed/__init__.py": "",
        "medembed/runtime/__init__.py": "",
        "medembed/runtime/runner.py": "def run():\n    from medembed.jobs import embed\n    return embed\n",
        "medembed/runtime/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                     "    from medembed.app.registry import Job\n",
        "medembed/jobs/__init__.py": "",
        "medembed/jobs/embed.py": "from medembed.index import tables\n",
        "medembed/app/__init__.py": "",
        "medembed/app/registry.py": "from medembed.jobs import embed\n",
        "medembed/index/__init__.py": "",
        "medembed/index/tables.py": "from ..embedding import card\n",
        "medembed/embedding/__init__.py": "",
        "medembed/embedding/card.py": "import medembed.index.tables\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "jobs").mkdir()
    g = import_graph(tmp_path)
    assert g["medembed.index.tables"] == {"medembed.embedding.card"}  # a relative import, resolved
    assert g["medembed.runtime.typed"] == set()  # TYPE_CHECKING only
    assert upward_imports(g) == {("medembed.runtime.runner", "medembed.jobs.embed"),
                                 ("medembed.embedding.card", "medembed.index.tables")}
    assert package_cycles(g) == {frozenset({"index", "embedding"})}
    assert upward_imports({"medembed.config": ["medembed.runtime.storage"]})  # L0 -> L1
    assert not upward_imports({"drivers.embed": ["medembed.app.runner"], "medembed.app.cli": ["medembed.jobs"]})
