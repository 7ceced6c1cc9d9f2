"""`jobctl dashboard` (serve it with gunicorn) and `jobctl hash-password` (for JOBS_DASHBOARD_USERS)."""

from __future__ import annotations

import socket

import click

from .cli_common import common
from .config import MAX_PORT, Settings
from .errors import ConfigError


@click.command("dashboard")
@click.option("--host", help="Address to bind (default: $JOBS_DASHBOARD_HOST or 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(0, MAX_PORT), help="Port (default: $JOBS_DASHBOARD_PORT or 9181)."
)
@click.option("--threads", default=4, show_default=True, help="Request threads.")
@common
def dashboard_command(settings, as_json, host, port, threads):
    """Serve the dashboard (gunicorn). Any address but this machine's needs users or a token."""
    settings = settings.with_(dashboard_host=host, dashboard_port=port)
    check_address(settings)
    from gunicorn.app.base import BaseApplication

    from dashboard import create_app

    app = create_app(settings)

    class Server(BaseApplication):
        def load_config(self):
            bind = f"{settings.dashboard_host}:{settings.dashboard_port}"
            for key, value in {"bind": bind, "workers": 1, "threads": threads, "accesslog": "-"}.items():
                self.cfg.set(key, value)

        def load(self):
            return app

    click.echo(f"dashboard on http://{settings.dashboard_host}:{settings.dashboard_port}/", err=True)
    Server().run()


def check_address(settings: Settings) -> None:
    """Raise ConfigError unless the dashboard may and can listen on its host and port: any address but this
    machine's needs users or a token, and nothing else may listen there."""
    from dashboard.security import is_loopback

    host, port = settings.dashboard_host, settings.dashboard_port
    if not is_loopback(host) and not (settings.dashboard_users or settings.dashboard_token):
        raise ConfigError(
            f"the dashboard binds {host} only with JOBS_DASHBOARD_USERS or JOBS_DASHBOARD_TOKEN set "
            "(see `jobctl hash-password`); without them it serves 127.0.0.1 only"
        )
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            # as gunicorn binds: a port left in TIME_WAIT counts as free, one that is listened on does not
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise ConfigError(
            f"the dashboard cannot listen on {host}:{port} (JOBS_DASHBOARD_HOST / JOBS_DASHBOARD_PORT): "
            f"{exc.strerror or exc}"
        ) from None


@click.command("hash-password")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def hash_password_command(password):
    """Print a password hash for JOBS_DASHBOARD_USERS ("name:role:hash;...")."""
    from werkzeug.security import generate_password_hash

    click.echo(generate_password_hash(password))
