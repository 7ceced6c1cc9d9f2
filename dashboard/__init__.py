"""The dashboard: `create_app(settings)` builds the Flask app (gunicorn "dashboard:create_app()").

Pages and a JSON API over the platform's read API (jobs.inspect) and admin API (jobs.admin), Prometheus
metrics, and rq-dashboard mounted at /rq, all behind one authentication and CSRF guard.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
from pathlib import Path

import redis
from flask import Flask, request

from jobs import catalog
from jobs.config import Settings
from jobs.connection import Context, activate

from . import rq_mount
from .api import api
from .metrics import metrics
from .security import Access, install, parse_users
from .views import pages


def create_app(settings: Settings | None = None, testing: bool = False) -> Flask:
    """The dashboard app for `settings` (default: from the environment). Warns, as every process does,
    when Redis may evict jobs; refuses with `strict` settings (RedisUnavailable)."""
    context = activate(Context.connect(settings or Settings.from_env(), resilient=True, check=False))
    with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):  # not up yet: the pages say so
        context.check_eviction()
    settings = context.settings
    catalog.load(settings.imports)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.dashboard_secret or _stored_secret(settings.data_dir),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        TESTING=testing,
        RQ_DASHBOARD_REDIS_URL=settings.redis_url,
    )
    app.extensions["jobs.context"] = context
    install(app, Access(parse_users(settings.dashboard_users), settings.dashboard_token))
    app.register_blueprint(pages)
    app.register_blueprint(api)
    app.register_blueprint(metrics)
    rq_mount.mount(app)

    @app.after_request
    def headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy", _CSP if not request.path.startswith("/rq") else _rq_csp(response)
        )
        return response

    return app


_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
_RQ_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-eval'{hashes}; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)


def _rq_csp(response) -> str:
    """rq-dashboard's policy. Its templates need eval (underscore's `_.template`); its own inline script is
    allowed by hash, never by 'unsafe-inline', because it writes job data (exception, result, arguments)
    into the page unescaped: an `<img onerror>` or `<script>` in a job must not run."""
    hashes = ""
    if response.mimetype == "text/html" and not response.direct_passthrough:
        for attributes, body in _INLINE_SCRIPT.findall(response.get_data(as_text=True)):
            if "src=" not in attributes and ("type=" not in attributes or "javascript" in attributes):
                digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
                hashes += f" 'sha256-{digest}'"
    return _RQ_CSP.format(hashes=hashes)


def _stored_secret(data_dir: Path) -> str:
    """A session secret kept in the data dir, so every dashboard process and restart shares it."""
    path = Path(data_dir) / "dashboard-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()
