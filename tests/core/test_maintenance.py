"""Maintenance plans by usage hours (spec section 9)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fabpanel.core.maintenance import PlanUsage, counts_for_plan, due_plans, lcd_message

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def plan(plan_id: int = 1, *, hours: float = 10, used: float = 0, lcd: str = 'Clean nozzle',
         description: str = 'Clean the nozzle', last: datetime | None = None) -> PlanUsage:
    return PlanUsage(plan_id=plan_id, machine_id=1, hours_between=hours, lcd_text=lcd, description=description,
                     last_intervention=last, used_seconds=used)


def test_due_only_when_usage_exceeds_the_interval() -> None:
    assert not plan(hours=10, used=0).due
    assert not plan(hours=10, used=36_000).due  # exactly the interval: not yet (FabOMatic: "exceeds")
    assert plan(hours=10, used=36_001).due
    assert plan(hours=0, used=1).due
    assert not plan(hours=0, used=0).due


def test_hours_left() -> None:
    assert plan(hours=10, used=3600).hours_left == 9
    assert plan(hours=1, used=7200).hours_left == -1


def test_uses_count_only_after_the_last_intervention() -> None:
    p = plan(last=T0)
    assert not counts_for_plan(p, T0 - timedelta(seconds=1))
    assert not counts_for_plan(p, T0)
    assert counts_for_plan(p, T0 + timedelta(seconds=1))
    assert counts_for_plan(plan(last=None), T0 - timedelta(days=3650))


def test_due_plans_keeps_order() -> None:
    a, b, c = plan(1, used=40_000), plan(2, used=0), plan(3, used=99_999)
    assert [p.plan_id for p in due_plans([a, b, c])] == [1, 3]


def test_lcd_message_is_the_first_overdue_plan_cut_to_the_lcd() -> None:
    plans = [plan(1, used=0, lcd='Not due'), plan(2, used=40_000, lcd='Oil the rails'), plan(3, used=40_000, lcd='X')]
    assert lcd_message(plans) == 'Oil the rails'
    assert lcd_message([plan(used=40_000, lcd='', description='A description far longer than the LCD')]) == \
        'A description fa'
    assert lcd_message([plan(used=40_000, lcd='Twenty characters!!!')]) == 'Twenty character'
    assert lcd_message([plan(used=0)]) == ''
    assert lcd_message([]) == ''
