"""Who owns which table, and which SQL in service/ writes where: read from the source, nothing imported.

A table's owner is the feature package whose module declares its Piccolo Table class (`tablename=`).
A write is INSERT INTO, UPDATE ... SET, DELETE FROM, TRUNCATE, COPY ... FROM, MERGE INTO, ALTER TABLE
(or asyncpg's copy_records_to_table / copy_to_table) in any string literal or f-string of a module;
docstrings are prose and are skipped. `python -m tests.support.table_ownership` prints both.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"

# One placeholder for whatever an f-string or a concatenation inserts: never a table name.
_HOLE = "\x00"
_NAME = r'(?:public\.)?("?[A-Za-z_][A-Za-z0-9_]*"?|\x00)'
_WRITES = (
    ("INSERT", re.compile(rf"\bINSERT\s+INTO\s+{_NAME}")),
    ("DELETE", re.compile(rf"\bDELETE\s+FROM\s+(?:ONLY\s+)?{_NAME}")),
    ("MERGE", re.compile(rf"\bMERGE\s+INTO\s+{_NAME}")),
    ("ALTER", re.compile(rf"\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?{_NAME}")),
    ("COPY", re.compile(rf"\bCOPY\s+{_NAME}(?:\s*\([^)]*\))?\s+FROM\b")),
    # FOR UPDATE, FOR NO KEY UPDATE and ON CONFLICT DO UPDATE are not statements; UPDATE t [AS] a SET is.
    (
        "UPDATE",
        re.compile(rf"(?<!FOR )(?<!KEY )(?<!DO )\bUPDATE\s+(?:ONLY\s+)?{_NAME}(?:\s+(?:AS\s+)?\w+)?\s+SET\b"),
    ),
)
_TRUNCATE = re.compile(
    r"\bTRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?((?:(?:public\.)?\"?\w+\"?|\x00)(?:\s*,\s*(?:(?:public\.)?\"?\w+\"?|\x00))*)"
)
_SQL_NOISE = re.compile(r"--[^\n]*|'(?:[^']|'')*'")  # SQL comments and quoted literals hold no statements
_COPY_CALLS = {"copy_records_to_table", "copy_to_table"}


@dataclass(frozen=True, slots=True)
class Write:
    kind: str  # INSERT, UPDATE, DELETE, TRUNCATE, COPY, MERGE, ALTER
    table: str | None  # None: the name is put in at run time (an f-string hole), so no owner can be checked
    feature: str  # the feature whose module holds the SQL
    where: str  # path:line


def _feature_of(path: Path, root: Path) -> str | None:
    relative = path.relative_to(root)
    return relative.parts[0] if len(relative.parts) >= 2 else None


def _modules(root: Path, containing: str = "") -> Iterator[tuple[Path, str, ast.Module]]:
    """The modules of the feature packages (only those whose text has `containing`), parsed."""
    for path in sorted(root.rglob("*.py")):
        feature = _feature_of(path, root)
        if feature is not None and containing in (text := path.read_text()):
            yield path, feature, ast.parse(text, filename=str(path))


def table_classes(root: Path = SERVICE) -> dict[str, list[str]]:
    """Each table name declared by a Table class (`class X(Table, tablename="x")`), with where."""
    found: dict[str, list[str]] = {}
    for path, _, tree in _modules(root, containing="piccolo.table"):  # a Table class imports it
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            if not any(
                isinstance(b, ast.Name | ast.Attribute) and ast.unparse(b).endswith("Table")
                for b in node.bases
            ):
                continue
            for keyword in node.keywords:
                if keyword.arg == "tablename" and isinstance(keyword.value, ast.Constant):
                    where = f"{root.name}/{path.relative_to(root)}:{node.lineno} {node.name}"
                    found.setdefault(str(keyword.value.value), []).append(where)
    return found


def owners(root: Path = SERVICE) -> dict[str, str]:
    """table -> owning feature: the package of the module that declares the table's class."""
    return {table: places[0].split("/")[1] for table, places in table_classes(root).items()}


def _docstrings(tree: ast.Module) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _text(node: ast.expr) -> str | None:
    """The text of a string expression with holes for what is computed: literals, f-strings, and `+`
    chains of them (SQL is often put together from pieces); None when it is no string at all."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        parts = [v.value if isinstance(v, ast.Constant) else _HOLE for v in node.values]
        return "".join(str(p) for p in parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        if left is None and right is None:
            return None
        return (left if left is not None else _HOLE) + (right if right is not None else _HOLE)
    return None


def _strings(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """Each outermost string expression once (a `+` chain as a whole, not also its pieces)."""
    skip = _docstrings(tree)
    inner: set[int] = set()
    for node in ast.walk(tree):
        if id(node) in skip or id(node) in inner or not isinstance(node, ast.expr):
            continue
        text = _text(node)
        if text is None:
            continue
        inner.update(id(child) for child in ast.walk(node) if child is not node)
        yield text, node.lineno


def _table(raw: str) -> str | None:
    return None if raw == _HOLE else raw.strip('"')


def writes_in(text: str) -> list[tuple[str, str | None]]:
    """The writes in one piece of SQL: (kind, table), table None when put in at run time."""
    sql = _SQL_NOISE.sub(" ", text)
    found: list[tuple[str, str | None]] = []
    for kind, pattern in _WRITES:
        found.extend((kind, _table(match.group(1))) for match in pattern.finditer(sql))
    for match in _TRUNCATE.finditer(sql):
        names = re.split(r"\s*,\s*", match.group(1))
        found.extend(("TRUNCATE", _table(name.removeprefix("public."))) for name in names)
    return found


def writes(root: Path = SERVICE) -> list[Write]:
    """Every write into a table found in service/'s feature packages."""
    found: list[Write] = []
    for path, feature, tree in _modules(root):
        where = f"{root.name}/{path.relative_to(root)}"
        for text, line in _strings(tree):
            found.extend(Write(kind, table, feature, f"{where}:{line}") for kind, table in writes_in(text))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _COPY_CALLS
            ):
                first = node.args[0] if node.args else None
                table = (
                    first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
                )
                found.append(Write("COPY", table, feature, f"{where}:{node.lineno}"))
    return found


def violations(found: list[Write], owned: dict[str, str]) -> list[str]:
    """Writes into another feature's table, into a table nobody owns, or into one named at run time."""
    problems: list[str] = []
    for write in found:
        if write.table is None:
            problems.append(
                f"{write.where}: {write.kind} into a table named at run time (no owner can be checked)"
            )
        elif write.table not in owned:
            problems.append(
                f"{write.where}: {write.kind} {write.table}, a table no Table class declares (no owner)"
            )
        elif owned[write.table] != write.feature:
            problems.append(
                f"{write.where}: {write.feature} writes {write.table} ({write.kind}), owned by {owned[write.table]}"
            )
    return problems


if __name__ == "__main__":
    owned = owners()
    by_feature: dict[str, list[str]] = {}
    for table, feature in sorted(owned.items()):
        by_feature.setdefault(feature, []).append(table)
    for feature, tables in sorted(by_feature.items()):
        print(f"{feature}: {', '.join(tables)}")
    problems = violations(writes(), owned)
    print(f"{len(problems)} write(s) into a table of another feature or of none")
    for problem in problems:
        print(f"  {problem}")
