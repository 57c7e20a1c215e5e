"""Maintenance plans by usage hours: what is due on a machine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(kw_only=True, slots=True)
class PlanUsage:
    plan_id: int
    machine_id: int
    hours_between: float
    lcd_text: str
    description: str
    last_intervention: datetime | None
    used_seconds: float  # closed uses of the machine that started after the last intervention

    @property
    def due(self) -> bool:
        return self.used_seconds > self.hours_between * 3600

    @property
    def hours_left(self) -> float:
        return self.hours_between - self.used_seconds / 3600


def counts_for_plan(plan: PlanUsage, use_start: datetime) -> bool:
    """A closed use adds to a plan when it started after the plan's last intervention (FabOMatic's rule)."""
    return plan.last_intervention is None or use_start > plan.last_intervention


def due_plans(plans: list[PlanUsage]) -> list[PlanUsage]:
    return [p for p in plans if p.due]


def lcd_message(plans: list[PlanUsage]) -> str:
    """What the board shows on its second line: the first overdue plan's LCD text (its description if none)."""
    for plan in plans:
        if plan.due:
            return (plan.lcd_text or plan.description)[:16]
    return ''
