"""The reference job, monthly invoices (jobs.billing): each run of the schedule invoices the month before
its fire time, in the schedule's zone, however late it runs; every month missed during downtime is
invoiced; a month is named one way only; `jobctl up` keeps an operator's changes to the schedule. (Many
processes racing for one month: tests/test_locks.py.)"""

from __future__ import annotations

import signal
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from jobs import billing, catalog, recurring
from jobs.connection import Context, activate
from jobs.enqueue import queue_for
from jobs.errors import InvalidArguments
from jobs.execution import INTERRUPT_SIGNAL, Worker
from tests.conftest import TEST_JOBS, make_settings

ALL_CUSTOMERS = sorted(customer[1] for customer in billing.DEMO_CUSTOMERS)


@pytest.fixture
def billing_context(redis_url, tmp_path, monkeypatch) -> Context:
    """An active context on an emptied test DB whose billing database lives in the test's own dir."""
    monkeypatch.setattr("jobs.connection._active", None)
    catalog.load([TEST_JOBS])
    ctx = activate(Context.connect(make_settings(redis_url, data_dir=tmp_path)))
    ctx.redis.flushdb()
    yield ctx
    ctx.redis.close()


def run_burst(context: Context) -> None:
    """Run what is queued in `default` with a worker in this process until it is empty."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, INTERRUPT_SIGNAL)}
    try:
        Worker([queue_for(context, "default")], context).work(burst=True)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def first_of(year: int, month: int, zone: str = "UTC") -> float:
    return datetime(year, month, 1, tzinfo=ZoneInfo(zone)).timestamp()


def invoiced(context: Context, month: str) -> list[str]:
    return sorted(invoice.customer for invoice in billing.invoices(month, data_dir=context.settings.data_dir))


def invoices_per_customer() -> list[tuple[int, int]]:
    with billing.connect() as db:
        return db.execute(
            "SELECT customer_id, COUNT(*) FROM invoices GROUP BY customer_id ORDER BY customer_id"
        ).fetchall()


@pytest.mark.parametrize("month", ["2026-1", "26-01", "2026-13", "2026-01-01", " 2026-01"])
def test_a_month_is_named_one_way_only(billing_context, month):
    billing.generate_monthly_invoices("2026-01")
    with pytest.raises(InvalidArguments, match="is not YYYY-MM"):
        billing.generate_monthly_invoices(month)  # "2026-1" would have taken a lock and keys of its own
    assert invoices_per_customer() == [(customer[0], 1) for customer in billing.DEMO_CUSTOMERS]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York"])
def test_a_run_of_the_schedule_invoices_the_month_before_its_fire_time_however_late_it_runs(
    billing_context, zone
):
    # fired on 1 October in the schedule's zone; run now (its retries failed, and it was requeued; or
    # no worker ran for weeks)
    in_zone = recurring.define(
        billing.SCHEDULE_ID, billing.generate_monthly_invoices, cron=billing.SCHEDULE_CRON, tz=zone
    )
    recurring.save(billing_context, in_zone, now=first_of(2026, 9, zone))
    fired = recurring.fire_due(billing_context, now=first_of(2026, 10, zone) + 1)
    assert fired[billing.SCHEDULE_ID] == [
        recurring.run_id(billing.SCHEDULE_ID, int(first_of(2026, 10, zone)))
    ]
    run_burst(billing_context)
    assert invoiced(billing_context, "2026-09") == ALL_CUSTOMERS
    assert invoiced(billing_context, "2026-10") == invoiced(billing_context, "2026-08") == []


def test_every_month_missed_while_no_scheduler_ran_is_invoiced(billing_context):
    recurring.save(billing_context, billing.schedule(), now=first_of(2026, 7) + 86400 * 14)  # mid-July
    recurring.fire_due(billing_context, now=first_of(2026, 10) + 86400 * 3)  # back on 4 October
    run_burst(billing_context)
    assert {month: invoiced(billing_context, month) for month in ("2026-07", "2026-08", "2026-09")} == {
        month: ALL_CUSTOMERS for month in ("2026-07", "2026-08", "2026-09")
    }


def test_registering_the_schedule_again_keeps_the_operators_changes(billing_context):
    billing.register_schedule(billing_context)  # the first `jobctl up`
    moved = recurring.define(
        billing.SCHEDULE_ID, billing.generate_monthly_invoices, cron=billing.SCHEDULE_CRON, tz="Europe/Berlin"
    )
    recurring.save(billing_context, moved)  # `jobctl schedules add generate-monthly-invoices ... --tz`
    billing.register_schedule(billing_context)  # the next `jobctl up`
    assert recurring.get(billing_context, billing.SCHEDULE_ID).timing.tz == "Europe/Berlin"
