"""Schedule ticks: cron in a time zone (DST included), end dates, and the request's validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from conclave.controller.schedules import next_tick
from conclave.schema import ScheduleRequest


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_a_local_time_stays_local_across_daylight_saving_time() -> None:
    # Berlin: 09:00 local is 08:00Z in winter and 07:00Z in summer (DST began on 2026-03-29).
    winter = next_tick("0 9 * * *", "Europe/Berlin", utc(2026, 3, 27, 12))
    summer = next_tick("0 9 * * *", "Europe/Berlin", utc(2026, 3, 28, 12))
    assert winter == utc(2026, 3, 28, 8) and summer == utc(2026, 3, 29, 7)
    assert next_tick("0 9 * * *", "UTC", utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 9)


def test_six_fields_tick_in_seconds_and_the_end_date_stops_ticks() -> None:
    assert next_tick("* * * * * */15", "UTC", utc(2026, 1, 1, 0, 0, 1)) == utc(2026, 1, 1, 0, 0, 15)
    end = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
    assert next_tick("* * * * * */15", "UTC", utc(2026, 1, 1, 0, 0, 20), end) == utc(2026, 1, 1, 0, 0, 30)
    assert next_tick("* * * * * */15", "UTC", utc(2026, 1, 1, 0, 0, 30), end) is None


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"cron": "every day"}, "cron", "not a cron expression"),
        ({"cron": "61 * * * *"}, "cron", "not a cron expression"),
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA time zone"),
        ({"end_at": "2030-01-01T00:00:00"}, "end_at", "needs a time zone"),
        ({"missed": "catch_up"}, "missed", "'skip' or 'run_once'"),
        ({"task": {"input": "x", "idempotency_key": "k"}}, "", "makes its own"),
    ],
)
def test_a_bad_schedule_names_the_field_and_what_was_expected(body: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ValidationError) as e:
        ScheduleRequest.model_validate({"cron": "0 * * * *", "task": {"input": "x"}, **body})
    err = e.value.errors()[0]
    assert ".".join(str(p) for p in err["loc"]) == field and words in err["msg"]
