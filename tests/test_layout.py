"""The package's shape, checked mechanically: no import circles inside ``ewe`` (counting imports inside
functions too: a lazy import hides a circle, it does not remove it), the layers the architecture promises,
and no ``sys.path`` edits anywhere (the package is installed)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ewe"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the ewe modules it imports (anywhere in the file), relative imports resolved. ``from X
    import Y`` is an edge to X.Y when Y is a module, else to X. A submodule's implicit import of its parent
    package is not an edge (every package would otherwise be a circle with its children)."""
    files = {module_name(p): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = (".".join(here[:len(here) - node.level + 1]) if node.level else "")
                mod = ".".join(p for p in (base, node.module or "") if p)
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in files]
                # names that are not submodules come from the package's own namespace: an edge to it
                targets = subs + ([mod] if len(subs) < len(node.names) else [])
            else:
                continue
            edges |= {t for t in targets if t in files and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}          # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_planted_circle(tmp_path):
    pkg = tmp_path / "ewe"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")       # lazy: still an edge
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")            # parent -> child only
    (pkg / "sub" / "b.py").write_text("from ..a import f\n")
    (pkg / "c.py").write_text("import ewe.a\n")
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        graph = import_graph(pkg)
    finally:
        ROOT = old
    assert graph["ewe.c"] == {"ewe.a"}
    cycle = find_cycle(graph)
    assert cycle is not None and set(cycle) == {"ewe.a", "ewe.sub.b"}
    graph["ewe.sub.b"].clear()
    assert find_cycle(graph) is None


def test_ewe_has_no_import_circles():
    graph = import_graph()
    assert len(graph) > 30 and "ewe.experiments.pipeline" in graph   # the walk saw the whole package
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def _reaches(graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("lower, upper", [
    ("ewe.attacks.removal", "ewe.experiments"),       # an attack never depends on the orchestration
    ("ewe.attacks.extraction", "ewe.experiments"),
    ("ewe.watermarks.schemes", "ewe.experiments"),    # a scheme plugs into the pipeline, not the reverse
    ("ewe.train", "ewe.experiments"),
    ("ewe.verify", "ewe.experiments"),
    ("ewe.innocents", "ewe.experiments"),
    ("ewe.data.splits", "ewe.experiments"),
    ("ewe.experiments.sweep", "ewe.cli"),             # the sweep never borrows the CLI's privates
    ("ewe.results.report", "ewe.cli"),
])
def test_layers(lower, upper):
    reached = _reaches(import_graph(), lower)
    assert not {m for m in reached if m == upper or m.startswith(upper + ".")}, f"{lower} reaches {upper}"


def test_the_result_names_need_no_torch():
    """The app's first page reads the model names (ewe.results.schema): that must not import torch."""
    import subprocess
    import sys
    code = "import sys, ewe.results.schema, ewe.results.runs; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_no_sys_path_edits_anywhere():
    offenders = []
    for folder in ("ewe", "tests", "bench", "ui", "pages"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == Path(__file__).resolve():
                continue
            if "sys.path.insert" in path.read_text() or "sys.path.append" in path.read_text():
                offenders.append(str(path.relative_to(ROOT)))
    assert (ROOT / "app.py").read_text().count("sys.path") == 0
    assert offenders == []
