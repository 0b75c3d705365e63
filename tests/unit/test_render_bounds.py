"""Bounded rendering: every way a template can work or grow without end is stopped, naming the limit,
quickly; ordinary templates render exactly as in Jinja's own sandbox."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from service.messaging import bounds, rendering
from service.messaging.bounds import RenderLimit

HOSTILE = {
    # (template, the limit it must hit)
    "nested loops": (
        "{% for i in range(10000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
        "loop_iterations",
    ),
    "loops of loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "loop_iterations",
    ),
    "string multiplication": ("{{ ('x' * 10**8)|length }}", "value_size"),
    "list multiplication": ("{{ ([1] * 10**7)|length }}", "value_size"),
    "shared references": ("{% set s = 'y' * 900000 %}{{ ([s] * 2)|join }}", "value_size"),
    "huge power": ("{{ 10 ** (10 ** 8) }}", "number_size"),
    "huge product": ("{{ (2 ** 99999) * (2 ** 99999) }}", "number_size"),
    "center": ("{{ 'x'|center(100000000) }}", "value_size"),
    "indent": ("{{ ('a\\n' * 400000)|indent(100) }}", "value_size"),
    "wordwrap": ("{{ ('a ' * 400000)|wordwrap(2, wrapstring='x' * 100) }}", "value_size"),
    "replace": ("{{ ('x' * 1000)|replace('x', 'y' * 10000) }}", "value_size"),
    "format filter": ("{{ '%999999999s'|format('x') }}", "value_size"),
    "percent": ("{{ '%*s' % (999999999, 'x') }}", "value_size"),
    "str.format width": ("{{ '{:>999999999}'.format('x') }}", "value_size"),
    "ljust": ("{{ 'x'.ljust(999999999) }}", "value_size"),
    "translate": ("{{ 'x'.translate({120: 'y'}) }}", "operation"),
    "doubling with ~": (
        "{% set a = 'x' * 500000 %}{% set a = a ~ a %}{% set a = a ~ a %}{{ a|length }}",
        "value_size",
    ),
    "into a set block": (
        "{% set s = 'y' * 900000 %}{% set b %}{% for i in range(1000) %}{{ s }}{% endfor %}{% endset %}{{ b|length }}",
        "output",
    ),
    "lazy map then join": ("{{ range(10000)|map('center', 900000)|join|length }}", "value_size"),
    "slice": ("{{ [1]|slice(100000000)|list|length }}", "value_size"),
    "sum of lists": ("{{ [[1], [2]]|sum(start=[]) }}", "operation"),
    "dict.fromkeys": ("{{ dict.fromkeys(range(100000), 'x' * 1000)|length }}", "value_size"),
    "exponential macro": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        "cpu_time",
    ),
    "literal output in a loop": ("{% for i in range(50000) %}" + "z" * 100 + "{% endfor %}", "output"),
    # What a review found past the first version of the checks:
    "empty strings weigh too": ("{% set e = [''] * 1000000 %}{% set f = e * 500 %}x", "value_size"),
    "lists of huge lists": (
        "{% set e = [''] * 999990 %}{% set f = [e] * 500000 %}{{ f|length }}",
        "value_size",
    ),
    "repeated widths": ("{{ ('{0:999999}' * 1000).format(1) }}", "value_size"),
    "repeated percent widths": ("{{ ('%999999s' * 1000) % ((1,) * 1000) }}", "value_size"),
    "a keyed width": ("{{ '%(a)999999999s' % {'a': 1} }}", "value_size"),
    "fields times arguments": ("{{ ('%(a)s' * 1000) % {'a': 'x' * 900000} }}", "value_size"),
    "replace by keyword": ("{{ ('x' * 900000)|replace(old='x', new='y' * 3000) }}", "value_size"),
    "tojson indent": ("{{ ([1] * 1000)|tojson(indent=999999) }}", "value_size"),
    "batch padding": ("{{ [1]|batch(100000000, 1)|list }}", "value_size"),
    "urlize target": ("{{ ('www.a.com ' * 300)|urlize(target='x' * 900000) }}", "value_size"),
    "a long ~ chain": ("{% set s = 'x' * 900000 %}{{ " + " ~ ".join(["s"] * 100) + " }}", "value_size"),
    "filter blocks": (
        "{% for i in range(100000) %}{% filter center(999000) %}x{% endfilter %}{% endfor %}",
        "output",
    ),
    "numbers print long": ("{{ [10**4000] * 200000 }}", "value_size"),
    "wordwrap is slow": ("{{ ('x' * 499999)|wordwrap(1) }}", "value_size"),
    "many big arguments": (
        "{% set b = [0] * 499999 %}{{ b|format(" + ", ".join(["b"] * 60) + ") }}",
        "value_size",
    ),
}


def _sources(html: str) -> dict[str, str]:
    return {"subject": "Hello", "text": "Hello", "html": html}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_template_is_refused_at_save_naming_the_limit_within_a_second(name: str) -> None:
    source, limit = HOSTILE[name]
    started = time.monotonic()
    with pytest.raises(rendering.TemplateProblem) as refused:
        rendering.check("order_thank_you", "en", _sources(source))
    assert refused.value.limit == limit, refused.value
    assert refused.value.part == "html"
    assert time.monotonic() - started < bounds.MAX_CPU_SECONDS + 1.5


@pytest.mark.parametrize(
    "source",
    [
        "{{ 1" + "0" * 5000 + " }}",  # past Python's digit limit
        "{{ " + "[" * 300 + "]" * 300 + " }}",  # past the recursion limit
        "{% if 1 %}" * 150 + "{% endif %}" * 150,  # past Python's nesting limit
        "{{ customer|e|e|e|e }}" * 4000,  # more expressions than a template may have
    ],
)
def test_a_source_python_cannot_compile_is_a_template_problem(source: str) -> None:
    with pytest.raises(rendering.TemplateProblem) as refused:
        rendering.check("order_thank_you", "en", _sources(source))
    assert refused.value.part == "html"


def test_a_guarded_loop_passes_the_save_check_and_is_stopped_at_send() -> None:
    # The samples never reach the guard; a real customer would: the render stops there, not hours later.
    guarded = (
        "{% if customer.points > 1000000 %}{% for i in range(100000) %}{% for j in range(100000) %}"
        "{% endfor %}{% endfor %}{% endif %}Thanks"
    )
    template = rendering.check("order_thank_you", "en", _sources(guarded))
    variables = rendering.sample_variables("order_thank_you", 3)
    variables["customer"] = {**variables["customer"], "points": 2_000_000}
    started = time.monotonic()
    with pytest.raises(RenderLimit) as stopped:
        rendering.render(
            template,
            message_type="order_thank_you",
            template_locale="en",
            format_locale="en",
            variables=variables,
        )
    assert stopped.value.limit == "loop_iterations"
    assert time.monotonic() - started < 1.0


def test_each_render_has_its_own_budget_and_the_loop_length_still_works() -> None:
    # 60,000 iterations a render: two renders in a row are fine; the budget does not leak between them.
    source = "{% for i in range(60000) %}{% if loop.last %}{{ loop.length }}{% endif %}{% endfor %}"
    template = rendering.check("order_thank_you", "en", _sources(source), probes=(1,))
    variables = rendering.sample_variables("order_thank_you", 3)
    for _ in range(2):
        out = rendering.render(
            template,
            message_type="order_thank_you",
            template_locale="en",
            format_locale="en",
            variables=variables,
        )
        assert "60000" in out.html


def test_budgets_are_per_thread() -> None:
    # A render in another thread neither sees nor spends this thread's budget.
    errors: list[BaseException] = []

    def other() -> None:
        try:
            with bounds.render_budget():
                bounds._budget().write(bounds.MAX_OUTPUT_CHARS)
        except BaseException as exc:
            errors.append(exc)

    with bounds.render_budget():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        bounds._budget().write(bounds.MAX_OUTPUT_CHARS)
    assert errors == []


def test_a_sandboxed_template_outside_a_budget_refuses_to_render() -> None:
    template = rendering.compile_template(
        "order_thank_you", _sources("{% for i in range(3) %}{{ i }}{% endfor %}")
    )
    with pytest.raises(RuntimeError, match="render_budget"):
        template.html.render({})


# Ordinary templates: the bounded environment renders what Jinja's sandbox renders.
_PIECES = st.sampled_from(
    [
        "{{ name }}",
        "{{ name|upper }}",
        "{{ items|join(', ') }}",
        "{% for i in items %}[{{ loop.index }}:{{ i }}]{% endfor %}",
        "{{ 'x' * count }}",
        "{{ count ** 2 }}",
        "{{ '%05d' % count }}",
        "{{ name ~ '!' }}",
        "{{ name|replace('a', 'ä') }}",
        "{{ name|center(9) }}",
        "{{ name.ljust(6) }}|",
        "{{ '{} has {}'.format(name, count) }}",
        "{% if count > 3 %}many{% else %}few{% endif %}",
        "{% set total = items|length + count %}{{ total }}",
        "{{ items|map('upper')|list }}",
        "{{ range(count)|sum }}",
        "{{ items|sort|first|default('none') }}",
        "<b>{{ '<i>' }}</b>",
        "{% macro m(x) %}({{ x }}){% endmacro %}{{ m(name) }}",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    pieces=st.lists(_PIECES, min_size=1, max_size=6),
    name=st.text(alphabet="abcä <>&", max_size=12),
    items=st.lists(st.text(alphabet="xyz", min_size=1, max_size=3), max_size=5),
    count=st.integers(min_value=0, max_value=40),
    html=st.booleans(),
)
def test_ordinary_templates_render_as_in_jinjas_sandbox(
    pieces: list[str], name: str, items: list[str], count: int, html: bool
) -> None:
    source = "".join(pieces)
    context = {"name": name, "items": items, "count": count}
    plain = ImmutableSandboxedEnvironment(autoescape=html, undefined=StrictUndefined)
    expected = plain.from_string(source).render(context)
    environment = rendering._env("html" if html else "text")
    template = rendering._compiled(environment, environment.parse(source))
    with bounds.render_budget():
        assert template.render(context) == expected


def test_a_garbage_collection_is_not_charged_to_the_render() -> None:
    """A collection runs in whichever thread allocates next; in a large process one can take longer than a
    template's whole budget, and it is not the template's CPU."""
    import gc
    import time

    from service.messaging import bounds

    heap = [[] for _ in range(300_000)]
    for cell in heap:
        cell.append(cell)  # cycles: a full collection walks them all
    started = time.thread_time()
    gc.collect()
    took = time.thread_time() - started
    assert took > 0.01, "the heap is too small to show anything"
    with bounds.render_budget(cpu_seconds=took / 2):
        gc.collect()  # the budget closes with a clock check: it would raise if this counted
    del heap
