"""Fault rules: what the emulator does wrong, to which operation, how often.

A rule as JSON (``POST /_emulator/faults`` takes one rule or a list)::

    {"operation": "create_invocation",   # one of OPERATIONS, or "*"
     "kind": "status",                   # see KINDS
     "status": 503,                      # kind "status" only: 400..599
     "retry_after": 2,                   # kind "status" only, optional: seconds, or a string sent verbatim
     "seconds": 1.5,                     # delay kinds only
     "times": 1,                         # how many requests it hits; -1: every one
     "probability": 1.0}                 # chance that a matching request is hit

Kinds: ``status`` answers that status and does nothing; ``delay`` waits, then serves normally; ``drop``
breaks the connection before doing anything; ``drop_after_commit`` performs the operation, then breaks
the connection; ``delay_after_commit`` performs it, then waits before answering. The first rule that
matches and wins its probability draw fires; a rule that has fired ``times`` times is removed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, get_args

from bridge.emulator.errors import bad_request

Kind = Literal["status", "delay", "drop", "drop_after_commit", "delay_after_commit"]
KINDS: Final = get_args(Kind)
OPERATIONS: Final = (
    "create_source",
    "list_sources",
    "get_source",
    "delete_source",
    "create_invocation",
    "list_invocations",
    "get_invocation",
    "cancel_invocation",
)
_FIELDS: Final = frozenset({"operation", "kind", "status", "retry_after", "seconds", "times", "probability"})


@dataclass(slots=True)
class FaultRule:
    """One fault; ``times`` counts down as it fires (``-1`` never runs out)."""

    operation: str
    kind: Kind
    status: int | None = None
    retry_after: float | str | None = None
    seconds: float = 0.0
    times: int = 1
    probability: float = 1.0

    def __post_init__(self) -> None:
        if self.operation != "*" and self.operation not in OPERATIONS:
            raise bad_request(f"operation must be '*' or one of {list(OPERATIONS)}")
        if self.kind not in KINDS:
            raise bad_request(f"kind must be one of {list(KINDS)}")
        if (self.kind == "status") != (self.status is not None):
            raise bad_request("status is required for kind 'status' and only allowed there")
        if self.status is not None and not (_is_int(self.status) and 400 <= self.status <= 599):
            raise bad_request("status must be an integer from 400 to 599")
        if self.retry_after is not None and (
            self.kind != "status" or not _valid_retry_after(self.retry_after)
        ):
            raise bad_request("retry_after must be seconds >= 0 or a string, and only for kind 'status'")
        if not _is_number(self.seconds) or not math.isfinite(self.seconds) or self.seconds < 0:
            raise bad_request("seconds must be a number >= 0")
        if not _is_int(self.times) or (self.times < 1 and self.times != -1):
            raise bad_request("times must be a positive integer or -1")
        if not _is_number(self.probability) or not 0.0 <= self.probability <= 1.0:
            raise bad_request("probability must be between 0 and 1")

    @classmethod
    def from_json(cls, data: object) -> FaultRule:
        if not isinstance(data, dict):
            raise bad_request("a fault rule must be an object")
        unknown = set(data) - _FIELDS
        if unknown:
            raise bad_request(f"unknown fault rule fields: {sorted(unknown)}")
        for required in ("operation", "kind"):
            if not isinstance(data.get(required), str):
                raise bad_request(f"a fault rule needs a string {required!r}")
        return cls(**data)

    def matches(self, operation: str) -> bool:
        return self.times != 0 and self.operation in ("*", operation)

    def retry_after_header(self) -> str | None:
        if self.retry_after is None or isinstance(self.retry_after, str):
            return self.retry_after
        return format(self.retry_after, "g")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_rules(body: object) -> list[FaultRule]:
    """One rule or a list of rules."""
    items = body if isinstance(body, list) else [body]
    return [FaultRule.from_json(item) for item in items]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _valid_retry_after(value: object) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < math.inf
