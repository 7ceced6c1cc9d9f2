"""`jobctl dashboard` (serve it with gunicorn) and `jobctl hash-password` (for JOBS_DASHBOARD_USERS)."""

from __future__ import annotations

import click

from .cli_common import common
from .errors import ConfigError


@click.command("dashboard")
@click.option("--host", help="Address to bind (default: $JOBS_DASHBOARD_HOST or 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: $JOBS_DASHBOARD_PORT or 9181).")
@click.option("--threads", default=4, show_default=True, help="Request threads.")
@common
def dashboard_command(settings, as_json, host, port, threads):
    """Serve the dashboard (gunicorn). Any address but this machine's needs users or a token."""
    from dashboard.security import is_loopback

    settings = settings.with_(dashboard_host=host, dashboard_port=port)
    if not is_loopback(settings.dashboard_host) and not (
        settings.dashboard_users or settings.dashboard_token
    ):
        raise ConfigError(
            f"the dashboard binds {settings.dashboard_host} only with JOBS_DASHBOARD_USERS or JOBS_DASHBOARD_TOKEN set "
            "(see `jobctl hash-password`); without them it serves 127.0.0.1 only"
        )
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


@click.command("hash-password")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def hash_password_command(password):
    """Print a password hash for JOBS_DASHBOARD_USERS ("name:role:hash;...")."""
    from werkzeug.security import generate_password_hash

    click.echo(generate_password_hash(password))
