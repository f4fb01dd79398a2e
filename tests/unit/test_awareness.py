"""The <budget> block: levels at the thresholds, what binds, what is shown."""

from __future__ import annotations

import pytest

from conclave.budgets.awareness import INSTRUCTIONS, Level, budget_view, level_for
from conclave.core.money import PICO
from conclave.core.store import LedgerSnapshot


@pytest.mark.parametrize(
    ("left", "level"),
    [
        (1.0, "HIGH"),
        (0.7, "HIGH"),
        (0.69, "MEDIUM"),
        (0.3, "MEDIUM"),
        (0.29, "LOW"),
        (0.1, "LOW"),
        (0.09, "CRITICAL"),
        (0, "CRITICAL"),
    ],
)
def test_levels(left: float, level: str) -> None:
    assert level_for(left).value == level


def snap(
    caps: dict[tuple[str, str], int], used: dict[tuple[str, str], int], resv: dict[tuple[str, str], int] | None = None
) -> LedgerSnapshot:
    return LedgerSnapshot(caps=caps, used=used, reserved=resv or {}, by={})


def test_the_tightest_limit_sets_the_level_and_every_limit_is_shown() -> None:
    s = snap(
        {("run", "output_tokens"): 1000, ("run", "usd"): 10 * PICO, ("run", "tool:search"): 4},
        {("run", "output_tokens"): 750, ("run", "usd"): 1 * PICO, ("run", "tool:search"): 4},
    )
    view = budget_view(s)
    assert view is not None and view.level is Level.LOW and view.binding == "output_tokens"
    text = view.render()
    assert text.startswith("<budget>\n") and text.endswith("\n</budget>")
    assert "output_tokens: used 750 of 1000, 250 left (25%)" in text
    assert "usd: used $1.0000 of $10.0000, $9.0000 left (90%)" in text
    assert "tool_calls.search: used 4 of 4, 0 left (0%)" in text  # shown, but does not set the level
    assert "level: LOW" in text and INSTRUCTIONS[Level.LOW] in text


def test_reservations_count_as_spent_and_scopes_are_included() -> None:
    s = snap(
        {("run", "model_calls"): 100, ("run/gather", "model_calls"): 10},
        {("run", "model_calls"): 5, ("run/gather", "model_calls"): 5},
        {("run/gather", "model_calls"): 4},
    )
    view = budget_view(s, scope="run/gather")
    assert view is not None and view.level is Level.CRITICAL  # 1 call left in the scope
    assert "model_calls (run/gather): used 5 of 10, 1 left" in view.render()
    assert budget_view(s, scope="run") is not None and budget_view(s, scope="run").level is Level.HIGH  # type: ignore[union-attr]


def test_last_model_call_is_critical_and_wall_clock_counts() -> None:
    assert budget_view(snap({("run", "model_calls"): 2}, {("run", "model_calls"): 1})).level is Level.CRITICAL  # type: ignore[union-attr]
    view = budget_view(snap({}, {}), wall_cap_s=100, wall_used_s=95)
    assert (
        view is not None and view.level is Level.CRITICAL and "wall_seconds: used 95s of 100s, 5s left" in view.render()
    )


def test_no_limits_no_block() -> None:
    assert budget_view(snap({}, {})) is None
