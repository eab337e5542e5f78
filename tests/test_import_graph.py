"""The packages' import graph, read statically from the source (every `import`, including those inside
functions): `align.data` never imports `align.judging` (judging depends on data, not the reverse), and
no modules import each other, directly or round a longer cycle, in `align/`, `annotation/` and `bench/`."""

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGES = ("align", "annotation", "bench")
SCRIPT_FOLDERS = ("bench", "bench.gpu")  # run as scripts: their folder is on sys.path, `import harness` is a sibling


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (a package's `__init__` counts as the package)."""
    paths = {module_name(p): p for package in PACKAGES for p in (REPO_ROOT / package).rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import mod` imports the module pkg.mod when there is one
                candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            if package in SCRIPT_FOLDERS and not getattr(node, "level", 0):
                candidates += [f"{package}.{c}" for c in candidates]
            for candidate in candidates:
                while candidate and candidate not in paths:  # `import a.b.c` of a package: its deepest module
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_data_never_imports_judging():
    graph = import_graph()
    offenders = {m: sorted(t for t in targets if t.startswith("align.judging"))
                 for m, targets in graph.items() if m.startswith("align.data")}
    assert not {m: t for m, t in offenders.items() if t}


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_walk_sees_imports_inside_functions():
    """The graph is only as good as its reading: a function-level import (the cycle workaround this test
    exists to catch) is an edge, and `from package import module` names the module."""
    graph = import_graph()
    assert "align.data.benchmarks" in graph["align.data.contamination"]
    assert "align.judging.saved_model" in graph["align.training.run"]  # imported inside save_and_judge
    # a bench script's `import harness` / `from generation_throughput import ...` is its sibling module
    assert {"bench.harness", "bench.generation_throughput"} <= graph["bench.serve_compile"]
    assert "bench.peak_rss" in graph["bench.decontamination"] and "align.data.contamination" in graph["bench.decontamination"]
