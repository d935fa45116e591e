"""The submission fingerprint an Idempotency-Key is bound to."""

from __future__ import annotations

from datetime import UTC, datetime

from service.commands import SubmitTask


def command(**fields: object) -> SubmitTask:
    defaults: dict[str, object] = {"task_type": "sleep", "payload": {"seconds": 1, "note": "a"}}
    return SubmitTask(**{**defaults, **fields})  # type: ignore[arg-type]


def test_the_order_of_payload_fields_does_not_matter() -> None:
    reordered = command(payload={"note": "a", "seconds": 1})

    assert reordered.fingerprint() == command().fingerprint()


def test_the_key_itself_is_not_part_of_it() -> None:
    assert command(idempotency_key="k1").fingerprint() == command().fingerprint()


def test_any_difference_in_what_is_asked_changes_it() -> None:
    base = command().fingerprint()
    others = [command(task_type="webhook"), command(payload={"seconds": 2, "note": "a"}),
              command(max_attempts=3), command(timeout_s=5.0), command(retry_base_s=2.0),
              command(not_before=datetime(2030, 1, 1, tzinfo=UTC))]

    fingerprints = {other.fingerprint() for other in others}

    assert base not in fingerprints
    assert len(fingerprints) == len(others)
