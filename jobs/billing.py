"""The reference job: monthly invoices, exactly one per customer and month, whatever runs twice.

`generate_monthly_invoices(month=None)` (scheduled `0 0 1 * *` as `generate-monthly-invoices` by
`jobctl up`; `month` defaults to the month before the run):
- one run per month at a time: it holds the lock `invoices:{month}`; a run that finds it held skips;
- one invoice per customer and month: the invoices table's unique (customer, month) key, written in
  a transaction that also checks the lock's fencing token, so a run that lost its lock cannot write;
- per invoice not yet e-mailed, a `send_invoice_email` job (unique per invoice) writes the e-mail to
  the outbox table (no mail leaves the machine). A run after a crash finishes what the crash left.

The store is a SQLite file, `JOBS_DATA_DIR/billing.sqlite3`, seeded with a few demo customers.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from rq import get_current_job

from . import recurring
from .catalog import job
from .connection import Context, current
from .errors import InvalidArguments, JobsError, LockUnavailable
from .locks import lock

SCHEDULE_ID = "generate-monthly-invoices"
SCHEDULE_CRON = "0 0 1 * *"
DEMO_CUSTOMERS = [
    (1, "Acme GmbH", "billing@acme.example", 4900),
    (2, "Globex Ltd", "accounts@globex.example", 9900),
    (3, "Initech SA", "ap@initech.example", 2900),
    (4, "Umbrella BV", "finance@umbrella.example", 19900),
    (5, "Hooli Inc", "invoices@hooli.example", 4900),
]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, monthly_fee_cents INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS invoices (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), month TEXT NOT NULL,
    amount_cents INTEGER NOT NULL, fence INTEGER NOT NULL, created_at REAL NOT NULL,
    UNIQUE (customer_id, month));
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, invoice_id INTEGER NOT NULL UNIQUE REFERENCES invoices(id),
    recipient TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS fences (name TEXT PRIMARY KEY, fence INTEGER NOT NULL);
"""


class StaleFence(JobsError):
    """A write carried an older fencing token than one already seen: its lock was lost meanwhile."""


@dataclass(frozen=True)
class Invoice:
    """An invoice as `jobctl invoices list` shows it."""

    id: int
    customer: str
    month: str
    amount_cents: int
    fence: int
    created_at: float
    emailed: bool

    def to_dict(self) -> dict:
        return asdict(self)


def database_path(data_dir: Path | None = None) -> Path:
    """Where the billing database lives."""
    return Path(data_dir or current().settings.data_dir) / "billing.sqlite3"


@contextmanager
def connect(data_dir: Path | None = None) -> Iterator[sqlite3.Connection]:
    """A connection to the billing database, created and seeded on first use; closed afterwards."""
    path = database_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)  # transactions are explicit
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        db.executemany("INSERT OR IGNORE INTO customers VALUES (?, ?, ?, ?)", DEMO_CUSTOMERS)
        yield db
    finally:
        db.close()


@contextmanager
def fenced(db: sqlite3.Connection, name: str, fence: int) -> Iterator[None]:
    """A write transaction that first proves `fence` is the newest token seen for the lock `name`,
    raising StaleFence (and writing nothing) when a later holder has written already."""
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT fence FROM fences WHERE name = ?", (name,)).fetchone()
        if row and row[0] > fence:
            raise StaleFence(f"lock {name}: fence {fence} is older than {row[0]}; this holder lost the lock")
        db.execute(
            "INSERT INTO fences VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET fence = ?", (name, fence, fence)
        )
        yield
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def previous_month(now: float | None = None, zone: str = "UTC") -> str:
    """The month before the one `now` falls in (in `zone`), as YYYY-MM."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, ZoneInfo(zone))
    year, month = (moment.year, moment.month - 1) if moment.month > 1 else (moment.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def _check_month(month: str) -> str:
    """`month` if it is YYYY-MM: the lock and each invoice's key are built from the text, so "2026-1"
    would invoice January a second time."""
    if not (isinstance(month, str) and re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month)):
        raise InvalidArguments(f"month {month!r} is not YYYY-MM")
    return month


def _month_due() -> str:
    """The month the run being done invoices by default: for a fire of the schedule, the month before its
    fire time in the schedule's zone, however late the run (a retry, a requeue, a catch-up after
    downtime); else last month in UTC."""
    running = get_current_job()
    fire = recurring.fire_of(running.id, SCHEDULE_ID) if running else None
    if fire is None:
        return previous_month()
    try:
        zone = recurring.get(current(), SCHEDULE_ID).timing.tz
    except JobsError:  # removed, or damaged, since it fired
        zone = "UTC"
    return previous_month(fire, zone)


@job(retries=3, timeout="30m", description="Monthly invoices: one per customer and month")
def generate_monthly_invoices(month: str | None = None) -> dict:
    """Invoice every customer for `month` (default: last month) once; returns what it did."""
    month = _check_month(month or _month_due())
    name = f"invoices:{month}"
    try:
        guard = lock(name, ttl=60)
        held = guard.acquire()
    except LockUnavailable as exc:
        return {"month": month, "skipped": str(exc)}
    try:
        created = _write_invoices(name, held.fence, month)
        emails = [send_invoice_email.enqueue(invoice_id).id for invoice_id in _not_emailed(month)]
        return {"month": month, "created": created, "emails_enqueued": len(emails)}
    finally:
        guard.release()


def _write_invoices(lock_name: str, fence: int, month: str) -> int:
    created = 0
    with connect() as db:
        for customer_id, fee in db.execute(
            "SELECT id, monthly_fee_cents FROM customers ORDER BY id"
        ).fetchall():
            with fenced(db, lock_name, fence):
                inserted = db.execute(
                    "INSERT OR IGNORE INTO invoices (customer_id, month, amount_cents, fence, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (customer_id, month, fee, fence, time.time()),
                )
                created += inserted.rowcount
    return created


def _not_emailed(month: str) -> list[int]:
    with connect() as db:
        rows = db.execute(
            "SELECT i.id FROM invoices i LEFT JOIN outbox o ON o.invoice_id = i.id"
            " WHERE i.month = ? AND o.id IS NULL ORDER BY i.id",
            (month,),
        ).fetchall()
    return [row[0] for row in rows]


@job(retries=5, unique="invoice-email:{invoice_id}", description="E-mail one invoice (to the outbox)")
def send_invoice_email(invoice_id: int) -> bool:
    """Write the invoice's e-mail to the outbox once; True if this run wrote it."""
    with connect() as db:
        row = db.execute(
            "SELECT c.email, c.name, i.month, i.amount_cents FROM invoices i JOIN customers c ON c.id = i.customer_id"
            " WHERE i.id = ?",
            (invoice_id,),
        ).fetchone()
        if row is None:
            raise InvalidArguments(f"no invoice {invoice_id}")
        email, customer, month, cents = row
        body = f"Dear {customer},\n\nyour invoice for {month} is {cents / 100:.2f} EUR.\n"
        inserted = db.execute(
            "INSERT OR IGNORE INTO outbox (invoice_id, recipient, subject, body, created_at) VALUES (?, ?, ?, ?, ?)",
            (invoice_id, email, f"Invoice {month}", body, time.time()),
        )
    return inserted.rowcount == 1


def invoices(month: str | None = None, data_dir: Path | None = None) -> list[Invoice]:
    """Invoices (of one month, or all), with whether their e-mail is in the outbox (read-only)."""
    query = (
        "SELECT i.id, c.name, i.month, i.amount_cents, i.fence, i.created_at, o.id IS NOT NULL"
        " FROM invoices i JOIN customers c ON c.id = i.customer_id LEFT JOIN outbox o ON o.invoice_id = i.id"
    )
    if month is not None:
        _check_month(month)
    if not database_path(data_dir).exists():
        return []  # nothing invoiced yet; a read must not create the database
    with connect(data_dir) as db:
        if month is None:
            rows = db.execute(query + " ORDER BY i.month, i.customer_id").fetchall()
        else:
            rows = db.execute(
                query + " WHERE i.month = ? ORDER BY i.customer_id", (_check_month(month),)
            ).fetchall()
    return [Invoice(*row[:6], bool(row[6])) for row in rows]


def register_schedule(context: Context) -> None:
    """Register the monthly schedule of `generate_monthly_invoices` unless it exists (an operator's
    changes to it, its zone say, are kept). Every missed fire runs after downtime: each invoices its
    own month."""
    if not context.redis.exists(context.keys.schedule(SCHEDULE_ID)):
        recurring.save(context, schedule())


def schedule() -> recurring.Schedule:
    """The monthly schedule of `generate_monthly_invoices`, as `register_schedule` registers it."""
    return recurring.define(
        SCHEDULE_ID,
        generate_monthly_invoices,
        cron=SCHEDULE_CRON,
        misfire="all",
        description="Invoices of last month",
    )
