"""The shipped templates: every type in every locale compiles, knows only its variables, renders over
numbers that reach every plural category, and the layout uses only what it is given."""

import dataclasses
from typing import get_args

import pytest

from service.messaging import rendering
from service.messaging.catalogue import LOCALES, MESSAGE_TYPES
from service.messaging.schemas import LocaleCode, MessageTypeKey


def test_the_api_accepts_exactly_the_catalogue() -> None:
    assert set(get_args(MessageTypeKey)) == set(MESSAGE_TYPES)
    assert get_args(LocaleCode) == LOCALES


@pytest.mark.parametrize("locale", LOCALES)
def test_every_type_is_shipped_and_renders(locale: str) -> None:
    sources = rendering.default_sources(locale)
    assert set(sources) == {*MESSAGE_TYPES, "_layout"}, "one table per message type, plus _layout"
    for message_type in MESSAGE_TYPES:
        assert set(sources[message_type]) == set(rendering.PARTS), message_type
        rendering.check(message_type, locale, sources[message_type])
        for count in rendering.PLURAL_PROBES:
            out = rendering.render(
                rendering.default_template(locale, message_type),
                message_type=message_type,
                template_locale=locale,
                format_locale=locale,
                variables=rendering.sample_variables(message_type, count),
            )
            assert out.subject and "\n" not in out.subject
            assert "Ada" in out.text, "the greeting names the customer"
            assert (
                "https://encore.example/u/sample" in out.text
                and 'href="https://encore.example/u/sample"' in out.html
            )
            assert "#" not in out.subject, "a plural form's # was not replaced"


@pytest.mark.parametrize("locale", LOCALES)
def test_the_parts_rendered_as_one_template_are_the_parts_rendered_alone(locale: str) -> None:
    for message_type in MESSAGE_TYPES:
        whole = rendering.default_template(locale, message_type)
        assert whole.whole is not None
        alone = dataclasses.replace(whole, whole=None)
        for count in (0, 1, 2, 5, 21):
            variables = rendering.sample_variables(message_type, count)
            args = {"message_type": message_type, "template_locale": locale, "format_locale": locale}
            assert rendering.render(whole, variables=variables, **args) == rendering.render(
                alone, variables=variables, **args
            )
