"""The package's import graph has no cycle, and its layers hold: `artifacts` depends on no other
ftgen module, `data` never imports `corpus`, and no module imports another module's private
(`_name`) helpers. Imports inside functions count (a lazy import is still a dependency);
`if TYPE_CHECKING:` blocks do not."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> list[tuple[str, list[str]]]:
    """(imported ftgen module, names taken from it) for every import outside TYPE_CHECKING."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for n in ast.walk(child)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("ftgen")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("ftgen"):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            found += [(m, []) for m in submodules]
            found.append((target, [n for n in names if f"{target}.{n}" not in modules]))
    return found


def graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, list[str]]]]]:
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    raw = {m: imports(p, set(files)) for m, p in files.items()}
    edges = {m: {t for t, _ in deps if t != m and t in files} for m, deps in raw.items()}
    return edges, raw


def test_no_import_cycles():
    edges, _ = graph()
    # Tarjan's strongly connected components: any with more than one module is a cycle
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_layers():
    edges, raw = graph()
    assert edges["ftgen.artifacts"] == set(), "artifacts must not depend on other ftgen modules"
    assert "ftgen.corpus" not in edges["ftgen.data"], "data <- corpus, one way"
    private = [
        f"{m} imports {n} from {t}"
        for m, deps in raw.items()
        for t, names in deps
        for n in names
        if n.startswith("_") and t != m
    ]
    assert not private, private
