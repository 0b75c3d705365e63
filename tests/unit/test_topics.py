"""The topic catalogue: every topic the service writes to the outbox is one webhooks can subscribe to."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.outbox.topics import GROUPS, TOPICS, is_known

SERVICE = Path(__file__).resolve().parents[2] / "service"
_TOPIC = r"[a-z_]+\.[a-z_]+"
# Python: Event("x.y", ...) (possibly on the next line), topic="x.y" keyword arguments, and
# `topic = "x.y" if ... else "x.y"` assignments (each literal of the expression).
_EVENT = re.compile(rf'\bEvent\(\s*"({_TOPIC})"')
_KEYWORD = re.compile(rf'\btopic\s*=\s*"({_TOPIC})"')
_ASSIGNMENT = re.compile(r"^\s*topic\s*(?::\s*str\s*)?=\s*(.+)$", re.MULTILINE)
_LITERAL = re.compile(rf'"({_TOPIC})"')
# SQL: quoted topics inside statements of files that write events set-based (insert_events, the outbox's
# own INSERT).
_SQL = re.compile(rf"'({_TOPIC})'")


def _sources() -> dict[Path, str]:
    return {path: path.read_text() for path in sorted(SERVICE.rglob("*.py"))}


def written_topics(sources: dict[Path, str]) -> dict[str, set[str]]:
    """Each topic literal found, with the files it was found in."""
    found: dict[str, set[str]] = {}

    def add(topic: str, path: Path) -> None:
        found.setdefault(topic, set()).add(str(path.relative_to(SERVICE.parent)))

    for path, text in sources.items():
        if path.name == "topics.py" and path.parent.name == "outbox":
            continue  # the catalogue itself
        for pattern in (_EVENT, _KEYWORD):
            for match in pattern.finditer(text):
                add(match.group(1), path)
        for assignment in _ASSIGNMENT.finditer(text):
            for literal in _LITERAL.finditer(assignment.group(1)):
                add(literal.group(1), path)
        if "INSERT INTO outbox" in text or "insert_events(" in text:
            for match in _SQL.finditer(text):
                add(match.group(1), path)
    return found


def test_the_scanner_finds_each_style() -> None:
    """The patterns recognise all the ways the service names a topic (so an empty scan can't pass)."""
    sample = {
        SERVICE / "a.py": 'emit(conn, p, [Event(\n    "order.created",\n    {}\n)])',
        SERVICE / "b.py": 'credit(conn, c, 5, topic="points.earned")',
        SERVICE / "c.py": '    topic = "customer.created" if created else "customer.updated"\n',
        SERVICE / "d.py": "_SQL = \"INSERT INTO outbox (topic) SELECT 'points.matured'\"",
        SERVICE / "e.py": "x = \"SELECT 'not.an_outbox_topic'\"",
        SERVICE / "f.py": "_E = insert_events(\"SELECT 'points.expired' AS topic\", at='$2')",
    }
    assert set(written_topics(sample)) == {
        "order.created",
        "points.earned",
        "customer.created",
        "customer.updated",
        "points.matured",
        "points.expired",
    }


def test_every_written_topic_is_in_the_catalogue() -> None:
    """Every topic literal in service/ that goes to the outbox is a known topic (webhook subscriptions
    are validated against TOPICS, so a missing one could never be subscribed to by name)."""
    found = written_topics(_sources())
    assert found, "no topics found: the scanner is broken"
    assert {
        "points.expired",
        "points.matured",
        "points.expiring_soon",
        "order.created",
        "order.refunded",
        "customer.created",
        "customer.updated",
        "webhook_endpoint.disabled",
        "points.adjusted",
    } <= set(found)
    unknown = {topic: sorted(files) for topic, files in found.items() if topic not in TOPICS}
    assert not unknown, f"topics written but missing from service.outbox.topics.TOPICS: {unknown}"


def test_catalogue_topics_are_well_formed() -> None:
    """Each topic is `group.name` in lower snake case, and GROUPS are exactly their groups."""
    assert all(re.fullmatch(_TOPIC, topic) for topic in TOPICS)
    assert {topic.split(".", 1)[0] for topic in TOPICS} == GROUPS
    assert {"points", "order", "customer", "webhook_endpoint"} <= GROUPS


@pytest.mark.parametrize(
    "pattern", ["points.expired", "order.created", "webhook_endpoint.disabled", "points.*", "order.*"]
)
def test_known_patterns(pattern: str) -> None:
    """An exact topic or `group.*` for an existing group is known."""
    assert is_known(pattern)


@pytest.mark.parametrize(
    "pattern",
    ["nope.*", "order.shipped", "points", "points.", "*", ".*", "points.**", "Points.expired", "", "*.*"],
)
def test_unknown_patterns(pattern: str) -> None:
    """Unknown groups, unknown topics, bare groups and other wildcards are rejected."""
    assert not is_known(pattern)


def test_every_catalogued_topic_is_written_somewhere() -> None:
    """No dead entries: each topic in TOPICS is written by some code in service/."""
    assert set(written_topics(_sources())) >= TOPICS
