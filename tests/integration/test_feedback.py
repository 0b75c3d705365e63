"""Voice of the customer over HTTP: surveys, answers a shop records itself, and what a score sets off — a
detractor's case and `detractor` gifts, an alarm under the threshold, a follow-up that reopens its case."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Api, fetch, idempotency, table_counts, verify_ledger

NPS = {"key": "nps", "name": "After an order", "kind": "nps"}
CSAT = {
    "key": "service",
    "name": "Our service",
    "kind": "csat",
    "dimensions": [{"key": "speed"}, {"key": "accuracy", "labels": {"en": "Got it right"}}],
}


async def survey(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    made = await api.client.post("/v1/surveys", json=body, headers=api.headers(**idempotency()))
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


async def answer(api: Api, body: dict[str, Any]) -> Any:
    return await api.client.post("/v1/feedback", json=body, headers=api.headers(**idempotency()))


def outbox(api: Api, topic: str) -> list[dict[str, Any]]:
    rows = fetch(api.client, "SELECT payload FROM outbox WHERE topic = $1 ORDER BY id", topic)
    return [json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"] for r in rows]


async def test_a_survey_shows_its_texts_in_every_locale_and_its_defaults(api: Api) -> None:
    made = await survey(api, {**NPS, "questions": {"en": "Would you tell a friend about {shop}?"}})
    assert made["scale"] == [0, 10] and made["alarm_below"] == 5 and made["delay_days"] == 7
    assert made["questions"]["en"] == "Would you tell a friend about {shop}?"
    assert made["questions"]["ru"] == "Насколько вероятно, что вы порекомендуете {shop} другу или коллеге?"
    assert sorted(made["questions"]) == ["cy", "en", "lv", "ms", "ru", "tr"]
    csat = await survey(api, CSAT)
    assert csat["scale"] == [1, 5] and csat["alarm_below"] == 2
    speed, accuracy = csat["dimensions"]
    assert speed["labels"]["lv"] == "Atbildes ātrums" and accuracy["labels"]["en"] == "Got it right"
    listed = (await api.client.get("/v1/surveys", headers=api.headers())).json()
    assert [s["key"] for s in listed["items"]] == ["nps", "service"]
    again = await api.client.post("/v1/surveys", json=NPS, headers=api.headers(**idempotency()))
    assert again.status_code == 409 and again.json()["field"] == "key"


async def test_bad_surveys_are_refused_naming_the_field(api: Api) -> None:
    before = table_counts(api.client)
    for body, field in (
        ({**NPS, "kind": "ces"}, "kind"),
        ({**NPS, "alarm_below": 12}, "alarm_below"),
        ({**CSAT, "alarm_below": 7}, "alarm_below"),
        ({**NPS, "dimensions": [{"key": "speed"}]}, "dimensions"),
        ({**CSAT, "dimensions": [{"key": "speed"}, {"key": "speed"}]}, "dimensions[1].key"),
        ({**NPS, "questions": {"en": "   "}}, "questions.en"),
        ({**NPS, "questions": {"xx": "Hello?"}}, "questions"),
    ):
        refused = await api.client.post("/v1/surveys", json=body, headers=api.headers(**idempotency()))
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["field"].startswith(field), (field, refused.text)
    assert table_counts(api.client) == before


async def test_a_detractor_opens_a_case_fires_detractor_gifts_and_an_alarm(api: Api) -> None:
    assert (await api.order("o-1")).status_code == 201
    consent = await api.client.put(
        "/v1/customers/c-1", json={"marketing_consent": True}, headers=api.headers()
    )
    assert consent.status_code == 200, consent.text  # surprise gifts go to customers who said yes
    await survey(api, NPS)
    gift_rule = await api.client.post(
        "/v1/gift-rules",
        json={
            "name": "Sorry",
            "trigger": {"kind": "detractor"},
            "gifts": [{"kind": "points", "points": 100}],
            "holdout": "0",
            "status": "active",
        },
        headers=api.headers(**idempotency()),
    )
    assert gift_rule.status_code == 201, gift_rule.text
    made = await answer(
        api, {"customer": "c-1", "survey": "nps", "score": 3, "comment": "parcel came broken", "order": "o-1"}
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["kind"], body["category"], body["alarm"], body["order_external_id"]) == (
        "nps",
        "detractor",
        True,
        "o-1",
    )
    case = (await api.client.get(f"/v1/cases/{body['case_id']}", headers=api.headers())).json()
    assert (case["source"], case["summary"], case["status"]) == (
        "feedback",
        "NPS 3: parcel came broken",
        "open",
    )
    assert case["order_external_id"] == "o-1"
    assert (await api.status())["points"]["available"] == 100  # the detractor gift
    assert [p["score"] for p in outbox(api, "feedback.alarm")] == [3]
    assert len(outbox(api, "feedback.received")) == 1 and len(outbox(api, "case.opened")) == 1
    verify_ledger(api.client)


async def test_bands_and_thresholds(api: Api) -> None:
    assert (await api.order("o-1")).status_code == 201
    await survey(api, {**NPS, "alarm_below": 7})
    await survey(api, CSAT)
    seen = []
    for body in (
        {"survey": "nps", "score": 10},
        {"survey": "nps", "score": 7},
        {"survey": "nps", "score": 6},
        {"kind": "nps", "score": 4},
        {"survey": "service", "score": 4, "dimensions": {"speed": 5, "accuracy": 3}},
        {"survey": "service", "score": 3},
        {"survey": "service", "score": 1},
        {"kind": "csat", "score": 2},
    ):
        made = await answer(api, {"customer": "c-1", **body})
        assert made.status_code == 201, made.text
        seen.append((made.json()["category"], made.json()["alarm"], made.json()["case_id"] is not None))
    assert seen == [
        ("promoter", False, False),
        ("passive", False, False),
        ("detractor", True, True),  # under this survey's 7
        ("detractor", True, True),  # no survey: NPS under 5
        ("promoter", False, False),
        ("passive", False, False),
        ("detractor", True, True),
        ("detractor", False, True),  # CSAT 2 is not under 2
    ]


async def test_bad_answers_are_refused_and_change_nothing(api: Api) -> None:
    assert (await api.order("o-1")).status_code == 201
    assert (await api.order("o-2", "c-2")).status_code == 201
    await survey(api, NPS)
    await survey(api, CSAT)
    before = table_counts(api.client)
    for body, status, field in (
        ({"customer": "c-1", "survey": "nps", "score": 11}, 422, "score"),
        ({"customer": "c-1", "survey": "nps", "score": -1}, 422, "score"),
        ({"customer": "c-1", "survey": "service", "score": 0}, 422, "score"),
        ({"customer": "c-1", "kind": "csat", "score": 6}, 422, "score"),
        ({"customer": "c-1", "score": 5}, 422, "kind"),
        ({"customer": "c-1", "survey": "nps", "kind": "csat", "score": 5}, 422, "kind"),
        ({"customer": "c-1", "survey": "nope", "score": 5}, 404, "survey"),
        ({"customer": "nobody", "survey": "nps", "score": 5}, 404, "customer"),
        ({"customer": "c-1", "survey": "nps", "score": 5, "order": "o-2"}, 422, "order"),
        ({"customer": "c-1", "survey": "nps", "score": 5, "order": "o-9"}, 404, "order"),
        (
            {"customer": "c-1", "survey": "service", "score": 3, "dimensions": {"price": 2}},
            422,
            "dimensions.price",
        ),
        (
            {"customer": "c-1", "survey": "service", "score": 3, "dimensions": {"speed": 6}},
            422,
            "dimensions.speed",
        ),
        ({"customer": "c-1", "survey": "nps", "score": 5, "comment": "x" * 5001}, 422, "comment"),
        ({"customer": "c-1", "survey": "nps", "score": 5, "comment": "  "}, 422, "comment"),
    ):
        refused = await answer(api, body)
        assert refused.status_code == status, (body, refused.text)
        assert refused.json()["field"] == field, (body, refused.text)
    assert table_counts(api.client) == before


async def test_a_follow_up_still_unhappy_reopens_the_case(api: Api) -> None:
    assert (await api.order("o-1")).status_code == 201
    await survey(api, NPS)
    first = (await answer(api, {"customer": "c-1", "survey": "nps", "score": 2, "comment": "rude"})).json()
    case_id = first["case_id"]
    closed = await api.client.post(
        f"/v1/cases/{case_id}/close", json={"note": "apologised"}, headers=api.headers(**idempotency())
    )
    assert closed.status_code == 200, closed.text
    happy = await answer(api, {"customer": "c-1", "survey": "nps", "score": 9, "follows_up_case_id": case_id})
    assert happy.status_code == 201 and happy.json()["reopened"] is False
    assert (await api.client.get(f"/v1/cases/{case_id}", headers=api.headers())).json()["status"] == "closed"
    unhappy = await answer(
        api,
        {
            "customer": "c-1",
            "survey": "nps",
            "score": 4,
            "comment": "still rude",
            "follows_up_case_id": case_id,
        },
    )
    assert unhappy.status_code == 201, unhappy.text
    assert unhappy.json()["reopened"] is True and unhappy.json()["case_id"] is None
    case = (await api.client.get(f"/v1/cases/{case_id}", headers=api.headers())).json()
    assert (case["status"], case["reopened"], case["closed_at"]) == ("open", 1, None)
    assert [e["kind"] for e in case["entries"]] == ["opened", "closed", "reopened"]
    assert case["entries"][-1]["text"] == "Follow-up: NPS 4: still rude"
    assert len(outbox(api, "case.reopened")) == 1
    assert len(fetch(api.client, "SELECT id FROM service_case")) == 1  # no second case
