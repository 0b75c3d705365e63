"""Architecture rules read from the source (nothing imported, no database):

- every table has one owner, the feature whose package declares its Table class, and only the owner
  writes it (INSERT, UPDATE, DELETE, TRUNCATE, COPY, MERGE, ALTER in any string of a feature's module);
- feature packages import each other without a cycle.

`python -m tests.support.table_ownership` and `python -m tests.support.import_graph` print the details.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support import import_graph, table_ownership
from tests.support.table_ownership import writes_in


def test_every_table_is_declared_once() -> None:
    declared = table_ownership.table_classes()
    assert {table: places for table, places in declared.items() if len(places) > 1} == {}
    assert declared, "no Table class found: the scan itself is broken"


def test_only_the_owner_writes_a_table() -> None:
    problems = table_ownership.violations(table_ownership.writes(), table_ownership.owners())
    assert problems == [], (
        "writes into a table of another feature (ask its service) or of none:\n" + "\n".join(problems)
    )


def test_no_import_cycle_between_features() -> None:
    edges = import_graph.imports()
    assert import_graph.cycles(edges) == [], import_graph.describe(edges)


# The scanners themselves, on small samples: a deliberate violation must be caught.


def test_each_kind_of_write_is_found() -> None:
    assert writes_in("INSERT INTO points_lot (id) VALUES ($1)") == [("INSERT", "points_lot")]
    assert writes_in('UPDATE "customer" c SET name = $2 WHERE c.id = $1') == [("UPDATE", "customer")]
    assert writes_in("UPDATE public.orders AS o\n   SET status = 'x'") == [("UPDATE", "orders")]
    assert writes_in("DELETE FROM outbox WHERE id = $1") == [("DELETE", "outbox")]
    assert writes_in("TRUNCATE TABLE tier, tier_change RESTART IDENTITY") == [
        ("TRUNCATE", "tier"),
        ("TRUNCATE", "tier_change"),
    ]
    assert writes_in("COPY orders (id, total) FROM STDIN") == [("COPY", "orders")]
    assert writes_in("MERGE INTO customer_balance b USING x ON true") == [("MERGE", "customer_balance")]
    assert writes_in("ALTER TABLE customer ADD COLUMN x int") == [("ALTER", "customer")]
    # A write inside a CTE counts as much as one at the top.
    assert writes_in("WITH moved AS (UPDATE points_lot SET state = 'available' RETURNING id) SELECT 1") == [
        ("UPDATE", "points_lot")
    ]


def test_locks_upserts_and_prose_are_no_writes() -> None:
    assert writes_in("SELECT 1 FROM customer_balance WHERE customer_id = $1 FOR UPDATE") == []
    assert writes_in("SELECT id FROM outbox FOR NO KEY UPDATE SKIP LOCKED") == []
    assert writes_in("SELECT 1 FROM a FOR UPDATE OF a SKIP LOCKED") == []
    assert writes_in("INSERT INTO rule_usage AS u VALUES (1) ON CONFLICT (id) DO UPDATE SET points = 2") == [
        ("INSERT", "rule_usage")
    ]
    assert writes_in("-- UPDATE customer SET x = 1\nSELECT 'DELETE FROM customer'") == []
    assert writes_in("Update the customer's balance, then delete from the cache.") == []
    assert writes_in("COPY orders TO STDOUT") == []


def _service(root: Path, files: dict[str, str]) -> Path:
    service = root / "service"
    for name, text in files.items():
        path = service / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        for folder in path.relative_to(service).parents:
            (service / folder / "__init__.py").touch()
    return service


def test_a_write_into_a_foreign_table_is_caught(tmp_path: Path) -> None:
    service = _service(
        tmp_path,
        {
            "ledger/tables.py": """
                from piccolo.table import Table
                class CustomerBalance(Table, tablename="customer_balance"):
                    pass
            """,
            "customers/tables.py": """
                from piccolo.table import Table
                class Customer(Table, tablename="customer"):
                    pass
            """,
            "customers/repository.py": '''
                """Docstrings are prose: INSERT INTO customer_balance here is no write."""
                TABLE = "customer"
                async def create(conn, program_id, where):
                    await conn.execute("INSERT INTO customer (id) VALUES ($1)", program_id)
                    await conn.execute(
                        "INSERT INTO customer_balance (customer_id) "
                        "SELECT id FROM customer"
                    )
                    await conn.execute(f"UPDATE customer_balance SET pending = 0 WHERE {where}")
                    await conn.execute("DELETE FROM " + TABLE + " WHERE id = $1", program_id)
                    await conn.execute("UPDATE nowhere SET x = 1")
                    await conn.copy_records_to_table("customer_balance", records=[])
            ''',
        },
    )
    owned = table_ownership.owners(service)
    assert owned == {"customer": "customers", "customer_balance": "ledger"}
    problems = table_ownership.violations(table_ownership.writes(service), owned)
    assert problems == [
        "service/customers/repository.py:7: customers writes customer_balance (INSERT), owned by ledger",
        "service/customers/repository.py:10: customers writes customer_balance (UPDATE), owned by ledger",
        "service/customers/repository.py:11: DELETE into a table named at run time (no owner can be checked)",
        "service/customers/repository.py:12: UPDATE nowhere, a table no Table class declares (no owner)",
        "service/customers/repository.py:13: customers writes customer_balance (COPY), owned by ledger",
    ]


def test_every_kind_of_import_makes_an_edge(tmp_path: Path) -> None:
    service = _service(
        tmp_path,
        {
            "core/db.py": "import service.programs.tables\n",
            "programs/service.py": "from service import outbox\n",
            "outbox/service.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from service.ledger.schemas import Entry
                def emit():
                    from ..programs import tables
            """,
            "ledger/jobs.py": "from . import domain\nfrom .domain import x\n",
            "ledger/domain.py": "x = 1\n",
            "orders/sub/deep.py": "from ...ledger import jobs\n",
        },
    )
    edges = import_graph.imports(service)
    assert sorted((e.source, e.target, e.where) for e in edges) == [
        ("core", "programs", "service/core/db.py:1"),
        ("orders", "ledger", "service/orders/sub/deep.py:1"),
        ("outbox", "ledger", "service/outbox/service.py:4"),
        ("outbox", "programs", "service/outbox/service.py:6"),
        ("programs", "outbox", "service/programs/service.py:1"),
    ]
    assert import_graph.cycles(edges) == [["outbox", "programs"]]
    report = import_graph.describe(edges)
    assert report.splitlines() == [
        "1 import cycle(s) between features",
        "cycle 1: outbox, programs",
        "  outbox -> programs: service/outbox/service.py:6",
        "  programs -> outbox: service/programs/service.py:1",
    ]


def test_components_of_a_larger_graph() -> None:
    nodes = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert import_graph.strongly_connected(nodes) == [["a", "b", "c"], ["d", "e"], ["f"]]
