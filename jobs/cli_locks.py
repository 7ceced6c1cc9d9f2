"""`jobctl locks ...` and `jobctl invoices ...`: see who holds what, free a stuck lock, list invoices."""

from __future__ import annotations

import click

from . import admin, billing, locks
from .cli_common import common, connect, emit


@click.group("locks")
def locks_group() -> None:
    """Distributed locks held right now."""


@locks_group.command("list")
@common
def list_command(settings, as_json):
    """Held locks: name, holder (job, pid, host), age, TTL left and fencing token."""
    views = locks.held_locks(connect(settings))

    def human():
        for view in views:
            holder = view.holder.describe() if view.holder else "?"
            age = view.to_dict()["age"]
            click.echo(
                f"{view.name:<40} held by {holder}  age {age if age is not None else '-'}s  "
                f"ttl {view.ttl_left if view.ttl_left is not None else '-'}s  fence {view.fence}"
            )
        click.echo(f"{len(views)} lock(s) held")

    emit(as_json, [view.to_dict() for view in views], human)


@locks_group.command("release")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@common
def release_command(settings, as_json, name, yes):
    """Release lock NAME whoever holds it (audited). Its holder notices at its next renewal."""
    if not yes:
        click.confirm(f"Release lock {name} held by someone else?", abort=True, err=True)
    released = admin.release_lock(connect(settings), name)
    emit(
        as_json,
        {"released": released},
        lambda: click.echo(f"released {name}" if released else f"{name} was not held"),
    )


@click.group("invoices")
def invoices_group() -> None:
    """Invoices written by the reference job (generate_monthly_invoices)."""


@invoices_group.command("list")
@click.option("--month", help="Only this month (YYYY-MM).")
@common
def invoices_command(settings, as_json, month):
    """Invoices with their amount, the fence they were written under, and whether they were e-mailed."""
    found = billing.invoices(month, data_dir=settings.data_dir)

    def human():
        for invoice in found:
            mailed = "e-mailed" if invoice.emailed else "not e-mailed yet"
            click.echo(
                f"#{invoice.id:<5} {invoice.month}  {invoice.customer:<16} {invoice.amount_cents / 100:>9.2f}  fence {invoice.fence}  {mailed}"
            )
        click.echo(f"{len(found)} invoice(s)")

    emit(as_json, [invoice.to_dict() for invoice in found], human)
