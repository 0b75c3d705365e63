"""The NPS / CSAT report over HTTP on real PostgreSQL: figures from known answers (inserted as rows: the
report reads what feedback, recovery and messaging write), months and ISO weeks cut in the program's
time zone (Europe/Berlin, across the change to summer time), segments by tier and locale, the response
rate from survey messages sent, alarms and the median time their cases took, the CSV, bad input."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from tests.conftest import START, Api, fetch, idempotency, iso, make_program

NO_ALARM = -1  # `answer(took=...)`: no alarm at all


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def customer(api: Api, external_id: str, locale: str | None = None) -> uuid.UUID:
    body: dict[str, Any] = {"email": f"{external_id}@example.com"}
    if locale is not None:
        body["locale"] = locale
    put = await api.client.put(f"/v1/customers/{external_id}", json=body, headers=api.headers())
    assert put.status_code in (200, 201), put.text
    [row] = fetch(
        api.client,
        "SELECT id FROM customer WHERE program_id = $1::uuid AND external_id = $2",
        api.program_id,
        external_id,
    )
    found: uuid.UUID = row["id"]
    return found


async def berlin(api: Api) -> None:
    patched = await api.client.patch("/v1/program", json={"timezone": "Europe/Berlin"}, headers=api.headers())
    assert patched.status_code == 200, patched.text


def survey(api: Api, key: str, kind: str) -> uuid.UUID:
    survey_id = uuid.uuid4()
    fetch(
        api.client,
        """INSERT INTO survey (id, program_id, key, name, kind, questions, send_after, delay_days, alarm_below,
                               ask_promoters, status, created_at, updated_at)
           VALUES ($1, $2::uuid, $3, $3, $4, '{}'::jsonb, 'order', 3, 5, 'none', 'active', $5, $5)""",
        survey_id,
        api.program_id,
        key,
        kind,
        START,
    )
    return survey_id


def case(api: Api, customer_id: uuid.UUID, opened: datetime, took: int | None) -> uuid.UUID:
    """A case opened at `opened`, closed `took` seconds later (None: still open)."""
    case_id = uuid.uuid4()
    fetch(
        api.client,
        """INSERT INTO service_case (id, program_id, customer_id, status, source, summary, opened_at, closed_at,
                                     created_at)
           VALUES ($1, $2::uuid, $3, $4, 'feedback', 'unhappy', $5, $6, $5)""",
        case_id,
        api.program_id,
        customer_id,
        "open" if took is None else "closed",
        opened,
        None if took is None else opened + timedelta(seconds=took),
    )
    return case_id


def answer(
    api: Api,
    customer_id: uuid.UUID,
    score: int,
    answered: str,
    *,
    kind: str = "nps",
    took: int | None = NO_ALARM,
    survey_id: uuid.UUID | None = None,
) -> None:
    """One answer at `answered`; with `took`, an alarm whose case closed after that many seconds (None:
    still open)."""
    from service.feedback import domain

    moment = at(answered)
    alarm = took != NO_ALARM
    case_id = case(api, customer_id, moment, took) if alarm else None
    fetch(
        api.client,
        """INSERT INTO feedback (id, program_id, customer_id, survey_id, kind, score, category, channel, source_key,
                                 alarm, case_id, answered_at, created_at, updated_at)
           VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, 'api', $8, $9, $10, $11, $11, $11)""",
        uuid.uuid4(),
        api.program_id,
        customer_id,
        survey_id,
        kind,
        score,
        domain.category(kind, score),  # type: ignore[arg-type]
        f"api:{uuid.uuid4()}",
        alarm,
        case_id,
        moment,
    )


def sent(
    api: Api,
    customer_id: uuid.UUID,
    when: str,
    count: int = 1,
    *,
    survey_id: uuid.UUID | None,
    status: str = "sent",
    message_type: str = "survey",
) -> None:
    for _ in range(count):
        moment = at(when)
        fetch(
            api.client,
            """INSERT INTO message (program_id, customer_id, message_type, category, dedupe_key, context, status,
                                    due_at, created_at, updated_at, sent_at)
               VALUES ($1::uuid, $2, $3, 'transactional', $4, $5::jsonb, $6, $7, $7, $7, $8)""",
            api.program_id,
            customer_id,
            message_type,
            uuid.uuid4().hex,
            json.dumps({} if survey_id is None else {"survey": {"id": str(survey_id)}}),
            status,
            moment,
            moment if status == "sent" else None,
        )


async def get(api: Api, status: int, key: str | None, query: dict[str, str]) -> Any:
    response = await api.client.get("/v1/reports/nps", params=query, headers=api.headers(key))
    assert response.status_code == status, response.text
    return response.json()


async def report(api: Api, **query: str) -> Any:
    return await get(api, 200, None, query)


async def refused(api: Api, status: int, **query: str) -> Any:
    return await get(api, status, None, query)


def figures(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["period"],
        row["segment"],
        row["responses"],
        row.get("nps", row.get("csat_mean")),
        row["promoters"],
        row["passives"],
        row["detractors"],
        row["surveys_sent"],
        row["response_rate"],
        row["alarms"],
        row["alarms_open"],
        row["alarms_resolved"],
        row["median_time_to_resolve_seconds"],
    )


async def months_in_berlin(api: Api) -> None:
    """Feb: 1 answer; March: 6 (the first sent at 00:30 on 1 March, Berlin, still February in UTC; the
    last at 23:30 on 31 March, summer time); April: 3 (the last a second before May in Berlin)."""
    await berlin(api)
    ada = await customer(api, "c-1", "en")
    nps = survey(api, "after-order", "nps")
    csat = survey(api, "after-delivery", "csat")
    answer(api, ada, 3, "2026-02-28T22:30:00Z", took=3600)  # Feb (23:30 Berlin)
    answer(api, ada, 10, "2026-02-28T23:30:00Z")  # March (00:30 Berlin)
    answer(api, ada, 9, "2026-03-10T12:00:00Z", survey_id=nps)
    answer(api, ada, 9, "2026-03-15T12:00:00Z")
    answer(api, ada, 8, "2026-03-20T12:00:00Z")
    answer(api, ada, 2, "2026-03-25T12:00:00Z", took=7200)
    answer(api, ada, 6, "2026-03-31T21:30:00Z", took=None)  # 23:30 CEST: March, its case still open
    answer(api, ada, 0, "2026-03-31T22:30:00Z", took=100)  # 00:30 CEST: April
    answer(api, ada, 1, "2026-04-10T12:00:00Z", took=301)
    answer(api, ada, 9, "2026-04-30T21:59:59Z")  # 23:59:59 on 30 April: in
    answer(api, ada, 10, "2026-04-30T22:00:00Z")  # midnight, 1 May: out
    answer(api, ada, 1, "2026-03-12T12:00:00Z", kind="csat", survey_id=csat, took=60)  # another kind
    answer(api, ada, 10, "2026-01-31T22:59:59Z")  # 23:59:59 on 31 January: out
    sent(api, ada, "2026-02-10T12:00:00Z", 3, survey_id=nps)
    sent(api, ada, "2026-02-28T23:10:00Z", 12, survey_id=nps)  # 00:10 on 1 March in Berlin
    sent(api, ada, "2026-03-12T12:00:00Z", 4, survey_id=csat)  # a CSAT survey: not this report's
    sent(api, ada, "2026-03-12T12:00:00Z", 2, survey_id=nps, status="queued")  # not sent yet
    sent(api, ada, "2026-03-12T12:00:00Z", 2, survey_id=None, message_type="order_thank_you")
    # Another program's answers and sends are not this program's.
    other = make_program(api.client, "Other")
    bob = await customer(other, "c-1", "en")
    answer(other, bob, 0, "2026-03-10T12:00:00Z", took=5)
    sent(other, bob, "2026-03-10T12:00:00Z", 5, survey_id=survey(other, "after-order", "nps"))


async def test_nps_per_month_in_the_programs_time_zone(api: Api) -> None:
    await months_in_berlin(api)
    body = await report(api, **{"from": "2026-02-01", "to": "2026-04-30"})
    assert (body["kind"], body["period"], body["segment"], body["survey"], body["timezone"]) == (
        "nps",
        "month",
        None,
        None,
        "Europe/Berlin",
    )
    assert (body["from"], body["to"]) == ("2026-01-31T23:00:00Z", "2026-04-30T22:00:00Z")
    assert [figures(r) for r in body["rows"]] == [
        ("2026-02", None, 1, -100, 0, 0, 1, 3, "0.3333", 1, 0, 1, 3600),
        ("2026-03", None, 6, 17, 3, 1, 2, 12, "0.5000", 2, 1, 1, 7200),  # (3 - 2) / 6 = 16.7 %
        ("2026-04", None, 3, -33, 1, 0, 2, 0, None, 2, 0, 2, 201),  # median of 100 s and 301 s: 200.5
    ]
    assert "csat_mean" not in body["rows"][0]
    # 10 answers: 4 promoters, 5 detractors; 10 of 15 sent; resolved in 100, 301, 3600, 7200 s.
    assert figures(body["totals"]) == (None, None, 10, -10, 4, 1, 5, 15, "0.6667", 5, 1, 4, 1951)


async def test_one_survey_and_csat(api: Api) -> None:
    await months_in_berlin(api)
    ada = fetch(api.client, "SELECT id FROM customer WHERE program_id = $1::uuid", api.program_id)[0]["id"]
    csat = fetch(
        api.client,
        "SELECT id FROM survey WHERE key = 'after-delivery' AND program_id = $1::uuid",
        api.program_id,
    )[0]["id"]
    answer(api, ada, 5, "2026-03-13T12:00:00Z", kind="csat", survey_id=csat)
    answer(api, ada, 3, "2026-03-14T12:00:00Z", kind="csat", survey_id=csat)
    answer(api, ada, 4, "2026-03-14T12:00:00Z", kind="csat")  # a shop's own, without a survey
    only = await report(api, survey="after-order", **{"from": "2026-03-01", "to": "2026-03-31"})
    assert only["survey"] == "after-order"
    assert [figures(r) for r in only["rows"]] == [
        ("2026-03", None, 1, 100, 1, 0, 0, 12, "0.0833", 0, 0, 0, None)
    ]
    # The survey says the kind; 1, 5 and 3 make 3.00 and one of each band.
    by_survey = await report(api, survey="after-delivery", **{"from": "2026-03-01", "to": "2026-03-31"})
    assert by_survey["kind"] == "csat"
    assert [figures(r) for r in by_survey["rows"]] == [
        ("2026-03", None, 3, "3.00", 1, 1, 1, 4, "0.7500", 1, 0, 1, 60)
    ]
    assert "nps" not in by_survey["rows"][0]
    every = await report(api, kind="csat", **{"from": "2026-03-01", "to": "2026-03-31"})
    assert figures(every["rows"][0])[:7] == ("2026-03", None, 4, "3.25", 2, 1, 1)  # 13 / 4
    empty = await report(api, kind="csat", **{"from": "2026-05-01", "to": "2026-05-31"})
    assert [figures(r) for r in empty["rows"]] == [
        ("2026-05", None, 0, None, 0, 0, 0, 0, None, 0, 0, 0, None)
    ]
    wrong = await refused(api, 422, survey="after-delivery", kind="nps")
    assert wrong["field"] == "query:kind"
    missing = await refused(api, 404, survey="nope")
    assert missing["field"] == "query:survey"


async def test_iso_weeks_from_monday_in_berlin(api: Api) -> None:
    await berlin(api)
    ada = await customer(api, "c-1")
    nps = survey(api, "after-order", "nps")
    answer(api, ada, 10, "2026-03-08T22:59:59Z")  # Sunday 23:59:59 in Berlin: W10
    answer(api, ada, 0, "2026-03-08T23:00:00Z", took=90)  # Monday 00:00: W11
    answer(api, ada, 7, "2026-03-29T21:59:59Z")  # Sunday 23:59:59 CEST (the day clocks went forward): W13
    sent(api, ada, "2026-03-08T23:30:00Z", 2, survey_id=nps)
    body = await report(api, period="week", **{"from": "2026-03-02", "to": "2026-03-29"})
    assert (body["from"], body["to"]) == ("2026-03-01T23:00:00Z", "2026-03-29T22:00:00Z")
    assert [figures(r) for r in body["rows"]] == [
        ("2026-W10", None, 1, 100, 1, 0, 0, 0, None, 0, 0, 0, None),
        ("2026-W11", None, 1, -100, 0, 0, 1, 2, "0.5000", 1, 0, 1, 90),
        ("2026-W12", None, 0, None, 0, 0, 0, 0, None, 0, 0, 0, None),
        ("2026-W13", None, 1, 0, 0, 1, 0, 0, None, 0, 0, 0, None),
    ]
    # Times as bounds: `to` is not included; the first and last weeks are partial.
    times = await report(
        api, period="week", **{"from": "2026-03-08T22:59:59Z", "to": "2026-03-08T23:00:00+00:00"}
    )
    assert [figures(r)[:3] for r in times["rows"]] == [("2026-W10", None, 1)]
    # An ISO year is not the calendar year: Monday 29 December 2025 starts 2026-W01.
    turn = await report(api, period="week", **{"from": "2025-12-22", "to": "2026-01-05"})
    assert [r["period"] for r in turn["rows"]] == ["2025-W52", "2026-W01", "2026-W02"]


async def test_segments_by_tier_and_locale(api: Api) -> None:
    tier = await api.client.post(
        "/v1/tiers",
        json={
            "key": "gold",
            "name": "Gold",
            "rank": 1,
            "qualification": {"metric": "spend", "threshold": {"amount": 1000000, "currency": "EUR"}},
        },
        headers=api.headers(**idempotency()),
    )
    assert tier.status_code == 201, tier.text
    ada = await customer(api, "c-1", "en")
    lv = await customer(api, "c-2", "lv")
    gold = await api.client.post(
        "/v1/customers/c-1/tier",
        json={"tier": "gold", "reason": "a gesture", "until": iso(START + timedelta(days=90))},
        headers=api.headers(**idempotency()),
    )
    assert gold.status_code == 200, gold.text
    nps = survey(api, "after-order", "nps")
    answer(api, ada, 10, "2026-02-10T12:00:00Z")
    answer(api, ada, 4, "2026-03-10T12:00:00Z", took=None)
    answer(api, lv, 9, "2026-03-11T12:00:00Z")
    answer(api, lv, 8, "2026-03-12T12:00:00Z")
    sent(api, ada, "2026-03-01T12:00:00Z", 4, survey_id=nps)
    sent(api, lv, "2026-03-01T12:00:00Z", 1, survey_id=nps)
    window = {"from": "2026-02-01", "to": "2026-03-31"}
    by_tier = await report(api, segment="tier", **window)
    assert by_tier["segment"] == "tier"
    assert [figures(r) for r in by_tier["rows"]] == [
        ("2026-02", "gold", 1, 100, 1, 0, 0, 0, None, 0, 0, 0, None),
        ("2026-02", "none", 0, None, 0, 0, 0, 0, None, 0, 0, 0, None),
        ("2026-03", "gold", 1, -100, 0, 0, 1, 4, "0.2500", 1, 1, 0, None),
        ("2026-03", "none", 2, 50, 1, 1, 0, 1, "2.0000", 0, 0, 0, None),
    ]
    assert figures(by_tier["totals"]) == (None, None, 4, 25, 2, 1, 1, 5, "0.8000", 1, 1, 0, None)
    by_locale = await report(api, segment="locale", **window)
    assert [(r["period"], r["segment"], r["responses"], r["nps"]) for r in by_locale["rows"]] == [
        ("2026-02", "en", 1, 100),
        ("2026-02", "lv", 0, None),
        ("2026-03", "en", 1, -100),
        ("2026-03", "lv", 2, 50),
    ]


async def test_the_default_range_is_twelve_periods_up_to_now(api: Api) -> None:
    body = await report(api)  # now: Monday 2 March 2026, 12:00 UTC
    assert (body["kind"], body["period"], body["from"], body["to"]) == (
        "nps",
        "month",
        "2025-04-01T00:00:00Z",
        iso(START),
    )
    assert [r["period"] for r in body["rows"]] == [f"2025-{m:02d}" for m in range(4, 13)] + [
        "2026-01",
        "2026-02",
        "2026-03",
    ]
    weeks = await report(api, period="week")
    assert weeks["from"] == "2025-12-15T00:00:00Z"
    assert [r["period"] for r in weeks["rows"]] == ["2025-W51", "2025-W52"] + [
        f"2026-W{w:02d}" for w in range(1, 11)
    ]
    # Only `to`: the twelve months up to it.
    until = await report(api, to="2026-06-30")
    assert (until["from"], until["to"]) == ("2025-07-01T00:00:00Z", "2026-07-01T00:00:00Z")


async def test_csv_with_accept_text_csv(api: Api) -> None:
    await months_in_berlin(api)
    response = await api.client.get(
        "/v1/reports/nps",
        params={"from": "2026-02-01", "to": "2026-04-30"},
        headers=api.headers(Accept="text/csv"),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="nps-2026-02-01-2026-04-30.csv"'
    assert "Accept" in response.headers["vary"]
    assert response.content == (
        b"period,segment,responses,nps,promoters,passives,detractors,surveys_sent,response_rate,alarms,"
        b"alarms_open,alarms_resolved,median_time_to_resolve_seconds\r\n"
        b"2026-02,,1,-100,0,0,1,3,0.3333,1,0,1,3600\r\n"
        b"2026-03,,6,17,3,1,2,12,0.5000,2,1,1,7200\r\n"
        b"2026-04,,3,-33,1,0,2,0,,2,0,2,201\r\n"
    )
    # JSON stays the default, also for a browser's Accept; CSV only when it ranks first.
    for accept in ("*/*", "application/json", "text/html,*/*;q=0.8", "application/json, text/csv;q=0.5"):
        plain = await api.client.get("/v1/reports/nps", headers=api.headers(Accept=accept))
        assert plain.headers["content-type"] == "application/json", accept
    ranked = await api.client.get(
        "/v1/reports/nps", headers=api.headers(Accept="text/csv, application/json;q=0.9")
    )
    assert ranked.headers["content-type"] == "text/csv; charset=utf-8"
    # The file is named by the local days: a range of times ending at midnight ends the day before. From
    # 09:00 UTC on 1 March: the first answer and the sends of that night are out.
    times = await api.client.get(
        "/v1/reports/nps",
        params={"from": "2026-03-01T10:00:00+01:00", "to": "2026-04-01T00:00:00+02:00", "segment": "locale"},
        headers=api.headers(Accept="text/csv"),
    )
    assert times.headers["content-disposition"] == 'attachment; filename="nps-2026-03-01-2026-03-31.csv"'
    assert times.text.splitlines()[1:] == ["2026-03,en,5,0,2,1,2,0,,2,1,1,7200"]


async def test_bad_input_is_422_naming_the_parameter(api: Api) -> None:
    await berlin(api)
    cases = [
        ({"period": "day"}, "query:period"),
        ({"segment": "x"}, "query:segment"),
        ({"kind": "ces"}, "query:kind"),
        ({"from": "2026-03-10", "to": "2026-03-09"}, "query:from"),
        ({"from": "2026-03-10T00:00:00Z", "to": "2026-03-10T00:00:00Z"}, "query:from"),  # empty
        ({"from": "2026-04-01"}, "query:from"),  # after now
        ({"from": "2020-01-01", "to": "2026-01-01"}, "query:from"),  # six years
        ({"from": "2026-13-01"}, "query:from"),
        ({"from": "2026-02-30"}, "query:from"),
        ({"from": "yesterday"}, "query:from"),
        ({"from": "2026-03-01T00:00:00"}, "query:from"),  # a time needs its offset
        ({"to": "2026-03-01T25:00:00Z"}, "query:to"),
        ({"to": "9999-12-31"}, "query:to"),
        ({"to": "1960-01-01"}, "query:to"),
        ({"from": ""}, "query:from"),
        ({"form": "2026-01-01"}, "query:form"),  # a typo is refused, not ignored
    ]
    for query, field in cases:
        problem = await refused(api, 422, **query)
        assert problem["field"] == field, (query, problem)
        assert problem["type"] == "urn:encore:problem:invalid-input", problem
    # Five years to the day pass.
    five = await report(api, **{"from": "2021-03-02", "to": "2026-03-01"})
    assert len(five["rows"]) == 61


async def test_read_keys_may_report(api: Api) -> None:
    made = await api.client.post(
        "/v1/api-keys", json={"name": "Analyst", "scope": "read"}, headers=api.headers(**idempotency())
    )
    assert made.status_code == 201, made.text
    body = await get(api, 200, made.json()["api_key"], {})
    assert len(body["rows"]) == 12
    anonymous = await api.client.get("/v1/reports/nps")
    assert anonymous.status_code == 401


async def test_hostile_query_values_are_refused_not_500(api: Api) -> None:
    """What the contract walk sends to each parameter (tests/contract/test_robustness.py), here before the
    operation is in the committed OpenAPI document."""
    good = {"from": "2026-02-01", "to": "2026-03-31", "period": "week", "segment": "tier", "kind": "nps"}
    for name in (*good, "survey"):
        for hostile in ("a%00b", "99999999999999999999", "-1", "%FF", "", "x" * 3000, "2026-02-01%00"):
            query = "&".join(f"{k}={v}" for k, v in {**good, name: hostile}.items())
            response = await api.client.get(f"/v1/reports/nps?{query}", headers=api.headers())
            assert 400 <= response.status_code < 500, (name, hostile, response.text)  # survey: 404 or 422
            assert response.json()["field"] == f"query:{name}", (name, hostile, response.text)
