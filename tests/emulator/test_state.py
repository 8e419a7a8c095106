"""The emulator's domain without HTTP: names, transitions, configuration and fault selection."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.emulator import ApiError, EmulatorConfig, EmulatorState, FaultRule
from bridge.emulator.testing import FakeClock
from bridge.emulator.validation import check_collection_name

SHA = "a" * 40


@pytest.fixture
def state(clock: FakeClock) -> EmulatorState:
    """A fresh state of its own (not the running emulator's): no HTTP in this module."""
    return EmulatorState(clock=clock, seed=7)


@pytest.fixture
def source_id(state: EmulatorState) -> str:
    return state.add_source(database_name="code", repository="acme/api")


def _create(state: EmulatorState, source_id: str, collection: str = "coll-1") -> str:
    body = {"target_collection_name": collection, "ref_identifier": {"sha": SHA}}
    return str(state.create_invocation(source_id, body)["invocation_id"])


def _state_of(state: EmulatorState, invocation_id: str) -> Any:
    return state.get_invocation(invocation_id)["status"]


@pytest.mark.parametrize(
    "name",
    ["abc", "a" * 512, "A.b_c-9", "repo-main-3f2a1b9c8d7e", "1.2.3", "1.2.3.4.5", "v1.x"],
)
def test_valid_collection_names(name: str) -> None:
    """Names Chroma accepts pass."""
    check_collection_name(name, max_length=512)


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "a" * 513,
        ".abc",
        "abc.",
        "_abc",
        "abc-",
        "a..b",
        "10.0.0.1",
        "999.1.1.1",
        "a b",
        "a/b",
        "é-abc",
        "",
    ],
)
def test_invalid_collection_names(name: str) -> None:
    """Length, charset, alphanumeric ends, '..' and IPv4 shapes are refused with 400."""
    with pytest.raises(ApiError) as caught:
        check_collection_name(name, max_length=512)
    assert caught.value.status == 400


def test_the_cloud_length_limit_can_be_configured() -> None:
    """max_collection_name_length=128 emulates Chroma Cloud's cap."""
    check_collection_name("a" * 128, max_length=128)
    with pytest.raises(ApiError):
        check_collection_name("a" * 129, max_length=128)


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (0.0, "pending"),
        (0.999, "pending"),
        (1.0, "processing"),
        (2.999, "processing"),
        (3.0, {"complete": {"finished_at": "2025-06-15T15:06:43Z", "duration_ms": 2000}}),
    ],
)
def test_transitions_happen_exactly_at_their_times(
    state: EmulatorState, source_id: str, clock: FakeClock, elapsed: float, expected: Any
) -> None:
    """pending until pending_seconds, processing until pending+processing seconds, then complete."""
    invocation_id = _create(state, source_id)
    clock.advance(elapsed)
    assert _state_of(state, invocation_id) == expected


def test_timings_are_fixed_when_an_invocation_is_created(
    state: EmulatorState, source_id: str, clock: FakeClock
) -> None:
    """Changing pending_seconds later does not move an existing invocation."""
    invocation_id = _create(state, source_id)
    state.configure(pending_seconds=100.0)
    clock.advance(1.0)
    assert _state_of(state, invocation_id) == "processing"


def test_ended_invocations_stay_ended_while_newer_ones_move_on(
    state: EmulatorState, source_id: str, clock: FakeClock
) -> None:
    """The clock moves only running invocations: finished, failed and cancelled ones keep their end,
    their collections stay finished, and invocations created later still go through every state."""
    done = _create(state, source_id, "coll-done")
    cancelled = _create(state, source_id, "coll-cancelled")
    state.cancel_invocation(cancelled)
    clock.advance(3.0)
    finished = _state_of(state, done)
    assert "complete" in finished
    later = _create(state, source_id, "coll-later")
    assert _state_of(state, later) == "pending"
    clock.advance(1.0)
    assert _state_of(state, later) == "processing"
    clock.advance(2.0)
    assert "complete" in _state_of(state, later)
    assert (_state_of(state, done), _state_of(state, cancelled)) == (finished, "cancelled")
    with pytest.raises(ApiError) as conflict:
        _create(state, source_id, "coll-done")  # its collection holds finished data
    assert conflict.value.status == 409


def test_zero_durations_complete_at_once(state: EmulatorState, source_id: str) -> None:
    """pending_seconds=0 and processing_seconds=0 complete on creation."""
    state.configure(pending_seconds=0, processing_seconds=0)
    invocation_id = _create(state, source_id)
    assert "complete" in _state_of(state, invocation_id)


def test_legacy_ids_rename_the_job_id(state: EmulatorState, source_id: str) -> None:
    """legacy_ids=True writes invocation_id instead of id."""
    invocation_id = _create(state, source_id)
    state.configure(legacy_ids=True)
    wire = state.get_invocation(invocation_id)
    assert (wire.get("id"), wire["invocation_id"]) == (None, invocation_id)


def test_branch_refs_are_kept(state: EmulatorState, source_id: str) -> None:
    """A branch ref comes back as git_ref_identifier.branch."""
    body = {"target_collection_name": "coll-b", "ref_identifier": {"branch": "main"}}
    invocation_id = state.create_invocation(source_id, body)["invocation_id"]
    metadata = state.get_invocation(invocation_id)["metadata"]
    assert metadata["github"] == {"git_ref_identifier": {"branch": "main"}}


def test_mark_finished_makes_create_conflict(state: EmulatorState, source_id: str) -> None:
    """A collection marked finished answers 409 to a create."""
    state.mark_finished("code", "coll-1")
    with pytest.raises(ApiError) as caught:
        _create(state, source_id, "coll-1")
    assert caught.value.status == 409


# Fault selection


def test_requests_are_counted_per_operation(state: EmulatorState) -> None:
    """Every request counts, whether or not a fault fires."""
    state.record_request("list_sources")
    state.record_request("list_sources")
    state.record_request("get_source")
    assert dict(state.counters) == {"list_sources": 2, "get_source": 1}


def test_a_rule_fires_times_times_then_goes(state: EmulatorState) -> None:
    """times=2 hits two requests, then the rule is removed."""
    state.add_faults([FaultRule(operation="get_source", kind="drop", times=2)])
    fired = [state.record_request("get_source") is not None for _ in range(3)]
    assert fired == [True, True, False]
    assert state.faults == []
    assert dict(state.faults_fired) == {"get_source:drop": 2}


def test_a_rule_only_hits_its_operation(state: EmulatorState) -> None:
    """A rule for create_invocation leaves other operations alone."""
    state.add_faults([FaultRule(operation="create_invocation", kind="drop")])
    assert state.record_request("get_invocation") is None
    assert state.record_request("create_invocation") is not None


def test_the_first_matching_rule_wins(state: EmulatorState) -> None:
    """Rules are tried in order."""
    state.add_faults(
        [
            FaultRule(operation="list_sources", kind="status", status=503),
            FaultRule(operation="*", kind="drop"),
        ]
    )
    first, second = state.record_request("list_sources"), state.record_request("list_sources")
    assert (first and first.kind, second and second.kind) == ("status", "drop")


def test_probability_zero_never_fires_nor_wears_out(state: EmulatorState) -> None:
    """A rule that loses its draw is not used up."""
    state.add_faults([FaultRule(operation="*", kind="drop", probability=0.0)])
    assert all(state.record_request("list_sources") is None for _ in range(20))
    assert state.faults[0].times == 1


def test_a_fractional_probability_fires_sometimes(state: EmulatorState) -> None:
    """probability=0.5 with a seeded draw fires on some requests and not others."""
    state.add_faults([FaultRule(operation="*", kind="drop", probability=0.5, times=-1)])
    fired = {state.record_request("list_sources") is not None for _ in range(50)}
    assert fired == {True, False}


@pytest.mark.parametrize(
    "rule",
    [
        {"operation": "nope", "kind": "drop"},
        {"operation": "*", "kind": "nope"},
        {"operation": "*", "kind": "status"},
        {"operation": "*", "kind": "status", "status": 302},
        {"operation": "*", "kind": "status", "status": True},
        {"operation": "*", "kind": "drop", "status": 500},
        {"operation": "*", "kind": "drop", "retry_after": 1},
        {"operation": "*", "kind": "status", "status": 429, "retry_after": -1},
        {"operation": "*", "kind": "delay", "seconds": -1},
        {"operation": "*", "kind": "delay", "seconds": "1"},
        {"operation": "*", "kind": "drop", "times": -2},
        {"operation": "*", "kind": "drop", "times": 1.5},
        {"operation": "*", "kind": "drop", "probability": -0.1},
    ],
)
def test_invalid_fault_rules_are_refused(rule: dict[str, Any]) -> None:
    """Rules are validated when made: a 400 names the problem."""
    with pytest.raises(ApiError) as caught:
        FaultRule.from_json(rule)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("retry_after", "header"), [(2, "2"), (0.5, "0.5"), ("Thu, 01 Jan 2099 00:00:00 GMT", None)]
)
def test_retry_after_header(retry_after: float | str, header: str | None) -> None:
    """Seconds are written as numbers; strings are sent verbatim."""
    rule = FaultRule(operation="*", kind="status", status=429, retry_after=retry_after)
    assert rule.retry_after_header() == (header or retry_after)


# Configuration


@pytest.mark.parametrize(
    "change",
    [
        {"pending_seconds": -0.1},
        {"processing_seconds": "2"},
        {"latency_seconds": True},
        {"fail_ratio": 1.01},
        {"create_status": 202},
        {"legacy_ids": 1},
        {"failing_repositories": "acme/api"},
        {"databases": [1]},
        {"max_collection_name_length": 2},
        {"unknown_knob": 1},
    ],
)
def test_invalid_configuration_is_refused(state: EmulatorState, change: dict[str, Any]) -> None:
    """configure refuses bad values and unknown keys, and keeps the old configuration."""
    with pytest.raises(ApiError):
        state.configure(**change)
    assert state.config == EmulatorConfig()


def test_failing_repositories_are_case_insensitive(state: EmulatorState, clock: FakeClock) -> None:
    """failing_repositories matches owner/name whatever the case."""
    state.configure(failing_repositories=["Acme/API"])
    source_id = state.add_source(database_name="code", repository="acme/api")
    invocation_id = _create(state, source_id)
    clock.advance(3.0)
    assert "failed" in _state_of(state, invocation_id)
