"""The policy status, pure: both conditions follow one lastTransitionTime rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mcp_operator.status import hub_tokens_condition, ready_status, status_body

NOW = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_hub_tokens_condition_keeps_transition_time_while_status_holds() -> None:
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}
    first = hub_tokens_condition([ready], status=False, reason="HubUnavailable", message="down", now=NOW)
    assert first == {
        "type": "HubTokens",
        "status": "False",
        "reason": "HubUnavailable",
        "message": "down",
        "lastTransitionTime": "2026-01-01T12:00:00Z",
    }
    later = NOW + timedelta(minutes=5)
    same = hub_tokens_condition([ready, first], status=False, reason="HubUnavailable", message="x", now=later)
    assert same["lastTransitionTime"] == first["lastTransitionTime"] and same["message"] == "x"
    flipped = hub_tokens_condition([ready, first], status=True, reason="Issued", message="ok", now=later)
    assert flipped["lastTransitionTime"] == "2026-01-01T12:05:00Z"


def policy_object(conditions: list[dict[str, str]] | None = None) -> dict[str, object]:
    return {"metadata": {"name": "p", "generation": 3}, "status": {"conditions": conditions or []}}


def test_ready_status_counts_and_condition() -> None:
    counts = {"matched": 3, "injected": 2, "ready": 1}
    status = ready_status(policy_object(), counts, invalid=None, now=NOW)
    assert status["observedGeneration"] == 3 and status["injected"] == 2
    (condition,) = status["conditions"]
    assert condition == {
        "type": "Ready",
        "status": "False",
        "reason": "Wiring",
        "message": "1/2 injected pods wired",
        "observedGeneration": 3,
        "lastTransitionTime": "2026-01-01T12:00:00Z",
    }
    # Still False an hour later: the transition time stays; True at last: it moves.
    later = NOW + timedelta(hours=1)
    again = ready_status(policy_object([condition]), counts, invalid=None, now=later)
    assert again["conditions"][0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    done = ready_status(policy_object([condition]), {**counts, "ready": 2}, invalid=None, now=later)
    assert done["conditions"][0]["reason"] == "ChildrenReady"
    assert done["conditions"][0]["lastTransitionTime"] == "2026-01-01T13:00:00Z"


def test_an_invalid_policy_says_why_and_has_no_counts() -> None:
    status = ready_status(policy_object(), None, invalid="spec.tools.mode must be one of ...", now=NOW)
    assert "injected" not in status
    assert status["conditions"][0]["reason"] == "InvalidPolicy"
    assert status["conditions"][0]["message"].startswith("spec.tools.mode")


def test_status_body_without_status_drops_the_writers_part() -> None:
    assert "status" not in status_body("p", None)
    assert status_body("p", {"a": 1})["status"] == {"a": 1}
