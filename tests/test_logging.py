"""The log lines: secrets never reach them, whatever field or nesting carries them, and a line without a
secret is exactly what orjson renders."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from bridge.logging import REDACTED, Redactor, configure_logging
from tests.factories import new_job

SECRET = "whsec-0123456789abcdef"
TOKEN = "ck-token-fedcba9876543210"
AWKWARD = 'a"b\\c\nd\u00e9\u2028e'  # every kind of character orjson escapes or writes raw


def scrubbed(redactor: Redactor, event: dict[str, Any]) -> bytes:
    """The line the value-by-value pass gives: the reference ``Redactor.dumps`` must match."""
    return orjson.dumps(redactor(None, "", copy.deepcopy(event)))


def test_a_line_without_a_secret_is_orjson_s_own() -> None:
    """No secret in the event: the line is orjson's rendering, byte for byte."""
    event = {"event": "delivery.accepted", "delivery_id": "72d3", "superseded": [1, 2], "jobs": 1}
    assert Redactor([SECRET, TOKEN]).dumps(dict(event)) == orjson.dumps(event)


@pytest.mark.parametrize(
    "event",
    [
        {"event": f"token {TOKEN} refused"},
        {"event": "x", "error": f"401: {SECRET}"},
        {"event": "x", "nested": {"deeper": [f"..{TOKEN}..", ("a", SECRET)]}},
        {"event": "x", "list": [1, 2, f"{SECRET}{TOKEN}"]},
    ],
)
def test_a_secret_anywhere_in_a_string_value_is_redacted(event: dict[str, Any]) -> None:
    line = Redactor([SECRET, TOKEN]).dumps(copy.deepcopy(event))
    assert SECRET.encode() not in line
    assert TOKEN.encode() not in line
    assert REDACTED.encode() in line
    assert orjson.loads(line)  # still one valid JSON object


def test_a_secret_inside_a_named_tuple_is_redacted_and_the_tuple_keeps_its_type() -> None:
    """Records such as ``NewJob`` are ``NamedTuple``s: scrubbing rebuilds one of the same type."""
    job = new_job(collection=f"x-{TOKEN}")
    redactor = Redactor([TOKEN])
    scrubbed_event = redactor(None, "", {"event": "x", "job": job})
    assert type(scrubbed_event["job"]) is type(job)
    assert scrubbed_event["job"].collection == f"x-{REDACTED}"
    assert TOKEN.encode() not in redactor.dumps({"event": "x", "job": job}, default=repr)


def test_a_secret_that_json_escapes_is_found_in_its_escaped_form() -> None:
    """Quotes, backslashes, control and non-ASCII characters: the line holds the escaped secret."""
    redactor = Redactor([AWKWARD])
    event = {"event": "x", "error": f"got {AWKWARD}!"}
    line = redactor.dumps(copy.deepcopy(event))
    assert orjson.loads(line)["error"] == f"got {REDACTED}!"
    assert line == scrubbed(redactor, event)


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(-(2**63), 2**63 - 1)
            | st.text(alphabet=st.sampled_from('ab"\\\n\u00e9-0')),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=5,
    )
)
def test_the_line_is_the_value_by_value_redaction_for_any_event(event: dict[str, Any]) -> None:
    """Whatever the event, ``dumps`` renders what scrubbing every value and then rendering gives (the
    secrets here are short, so they turn up often)."""
    redactor = Redactor(['ab"\\', "\u00e9-0\n", "abab"])
    assert redactor.dumps(copy.deepcopy(event)) == scrubbed(redactor, event)


def _fail() -> None:
    raise RuntimeError(f"failed with {SECRET}")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = []


@pytest.mark.usefixtures("restore_logging")
def test_the_service_s_lines_carry_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    """structlog's lines, an exception's traceback and the standard library's (uvicorn's) lines."""
    configure_logging(level="info", fmt="json", secrets=[SECRET, TOKEN])  # here: capsys's stream is set
    log = structlog.get_logger("bridge.test")
    log.info("sync.refused", error=f"token {TOKEN} refused", nested={"key": [SECRET]})
    try:
        _fail()
    except RuntimeError:
        log.exception("worker.loop_error")
    logging.getLogger("uvicorn.error").warning("header carried %s", TOKEN)
    out = capsys.readouterr().err
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert [line["event"] for line in lines] == [
        "sync.refused",
        "worker.loop_error",
        f"header carried {REDACTED}",
    ]
    assert lines[0]["error"] == f"token {REDACTED} refused"
    assert lines[0]["nested"] == {"key": [REDACTED]}
    assert f"failed with {REDACTED}" in lines[1]["exception"]
    assert SECRET not in out
    assert TOKEN not in out
