"""The cost guards at run time: usage recorded as it comes, the visit's and the day's budgets.

The maths is pure (:mod:`kiosk.budget`); this adapter writes each visit's cumulative usage
to SQLite (off the event loop: a durable write can take tens of ms on an SD card), and
turns verdicts into state-machine inputs: a visit over its budget is ended with a goodbye,
a spent day refuses new visits until the next local day.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kiosk import budget
from kiosk import conversation as cv
from kiosk.config import CostSettings
from kiosk.errors import StoreError
from kiosk.leads.store import Store
from kiosk.logs import event
from kiosk.realtime import session as rs

log = logging.getLogger(__name__)

DAY_CHECK_S = 60.0


class BudgetGuard:
    """Records usage and applies the visit and daily budgets."""

    def __init__(
        self,
        store: Store,
        cost: CostSettings,
        rates: budget.Rates,
        *,
        today: Callable[[], str],
        submit: Callable[[cv.Input], None],
        current_visit: Callable[[], str | None],
    ) -> None:
        self._store = store
        self._cost = cost
        self._rates = rates  # the configured models' prices
        self._today = today  # the local day (budgets reset at local midnight)
        self._submit = submit
        self._current_visit = current_visit
        self._day = ""
        self._day_spent = False

    def cost_usd(self, usage: rs.Usage) -> float:
        """What ``usage`` cost with this kiosk's models."""
        return budget.cost_usd(usage, self._rates)

    async def record(self, visit_id: str, total: rs.Usage) -> None:
        """Store the visit's cumulative usage, then apply both budgets; never raises (it runs
        in the kiosk's task group: a failure here must not take the daemon down)."""
        try:
            await self._record(visit_id, total)
        except Exception:
            log.exception("usage not recorded", extra=event("store_error"))

    async def _record(self, visit_id: str, total: rs.Usage) -> None:
        cost = self.cost_usd(total)
        day = self._today()
        store = self._store

        def write() -> tuple[int, float]:
            store.record_usage(visit_id, day, budget.token_counts(total), cost)
            return store.usage_for_day(day)

        try:
            day_tokens, day_cost = await asyncio.to_thread(write)
        except StoreError as exc:
            # Budgets must not take the conversation down; the next response tries again.
            log.error("usage not recorded: %s", exc, extra=event("store_error"))
            return
        tokens = total.tokens
        verdict = budget.check(tokens, cost, day_tokens, day_cost, self._cost)
        if verdict.session_spent and self._current_visit() == visit_id:
            log.warning(
                "visit budget spent (%d tokens, $%.2f)",
                tokens,
                cost,
                extra=event("budget_session", session=visit_id, cost_usd=round(cost, 4)),
            )
            self._submit(cv.BudgetSpent(daily=False))
        self._daily_verdict(day, verdict.daily_spent, day_tokens, day_cost)

    def check_day(self) -> None:
        """At start-up and periodically: is today's budget (still) spent?"""
        day = self._today()
        try:
            tokens, cost = self._store.usage_for_day(day)
        except StoreError as exc:
            log.error("usage not readable: %s", exc, extra=event("store_error"))
            return
        self._daily_verdict(day, budget.check(0, 0.0, tokens, cost, self._cost).daily_spent, tokens, cost)

    async def watch_days(self) -> None:
        """A refused kiosk comes back at the start of the next (local) day."""
        while True:
            await asyncio.sleep(DAY_CHECK_S)
            self.check_day()

    def _daily_verdict(self, day: str, spent: bool, day_tokens: int, day_cost: float) -> None:
        if spent and not (self._day_spent and self._day == day):
            log.warning(
                "daily budget spent (%d tokens, $%.2f): new visits refused until tomorrow",
                day_tokens,
                day_cost,
                extra=event("budget_daily", day=day, tokens=day_tokens, cost_usd=round(day_cost, 2)),
            )
            self._submit(cv.BudgetSpent(daily=True))
        elif not spent and self._day_spent:
            log.info("daily budget available again", extra=event("budget_restored", day=day))
            self._submit(cv.BudgetRestored())
        self._day, self._day_spent = day, spent
