"""The import graph between feature packages (service/<feature>/) and its cycles.

Every import statement counts, wherever it stands (module top, inside a function, under TYPE_CHECKING):
each is a dependency a reader has to follow. `python -m tests.support.import_graph` prints the cycles
(strongly connected components of more than one feature) with the imports that close them;
`python -m tests.support.import_graph REV` does so for a git revision (e.g. a commit before a change).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # the importing feature
    target: str  # the imported feature
    where: str  # path:line of the statement, relative to the repository


def features(root: Path = SERVICE) -> list[str]:
    """The feature packages: every folder of service/ with an __init__.py."""
    return sorted(p.parent.name for p in root.glob("*/__init__.py"))


def _module_name(path: Path, root: Path) -> list[str]:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported_modules(tree: ast.AST, module: list[str], is_package: bool) -> Iterator[tuple[list[str], int]]:
    """Every module an import statement names (absolute), with its line; `from a import b` also yields
    a.b, since b may be a module (`from service import ledger`)."""
    package = module if is_package else module[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split("."), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                named = [*base, *(node.module.split(".") if node.module else [])]
            else:
                named = node.module.split(".") if node.module else []
            yield named, node.lineno
            for alias in node.names:
                yield [*named, alias.name], node.lineno


def imports(root: Path = SERVICE) -> list[Import]:
    """Every import from one feature package into another, each statement once per target feature."""
    known = set(features(root))
    found: dict[tuple[str, str, str], Import] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if len(relative.parts) < 2 or relative.parts[0] not in known:
            continue  # service/app.py, cli.py, settings.py...: the composition root, not a feature
        source = relative.parts[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        module = _module_name(path, root)
        for named, line in _imported_modules(tree, module, path.name == "__init__.py"):
            if len(named) >= 2 and named[0] == root.name and named[1] in known and named[1] != source:
                where = f"{root.name}/{relative}:{line}"
                found.setdefault((source, named[1], where), Import(source, named[1], where))
    return list(found.values())


def graph(edges: list[Import]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for edge in edges:
        result.setdefault(edge.source, set()).add(edge.target)
        result.setdefault(edge.target, set())
    return result


def strongly_connected(nodes: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, each sorted, the list sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(nodes.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return sorted(components)


def cycles(edges: list[Import]) -> list[list[str]]:
    """The import cycles: components of more than one feature (a feature importing itself is fine)."""
    return [c for c in strongly_connected(graph(edges)) if len(c) > 1]


def describe(edges: list[Import]) -> str:
    """The cycles as a reader wants them: the features of each and the imports between them."""
    found = cycles(edges)
    lines = [f"{len(found)} import cycle(s) between features"]
    for number, component in enumerate(found, 1):
        members = set(component)
        lines.append(f"cycle {number}: {', '.join(component)}")
        inside: dict[tuple[str, str], list[str]] = {}
        for edge in edges:
            if edge.source in members and edge.target in members:
                inside.setdefault((edge.source, edge.target), []).append(edge.where)
        for (source, target), places in sorted(inside.items()):
            shown = ", ".join(places[:3]) + (f" (+{len(places) - 3} more)" if len(places) > 3 else "")
            lines.append(f"  {source} -> {target}: {shown}")
    return "\n".join(lines)


def imports_at(revision: str) -> list[Import]:
    """The imports of service/ as it was at a git revision."""
    repository = SERVICE.parent
    archive = subprocess.run(
        ["git", "-C", str(repository), "archive", "--format=tar", revision, "service"],
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "archive.tar"
        target.write_bytes(archive)
        with tarfile.open(target) as tar:
            tar.extractall(folder, filter="data")
        return imports(Path(folder) / "service")


if __name__ == "__main__":
    print(describe(imports_at(sys.argv[1]) if len(sys.argv) > 1 else imports()))
