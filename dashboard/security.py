"""Who may see and do what: users with roles, a bearer token, local-only access when neither is
configured (Hangfire's default, without its loopholes), and CSRF protection of every POST."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask, abort, g, redirect, request, session, url_for
from werkzeug.security import check_password_hash

from jobs.errors import ConfigError

ROLES = ("viewer", "operator")
LOCAL_OPERATOR = "local"  # the actor name of a request in local-only mode


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str


def parse_users(text: str) -> dict[str, User]:
    """Users from "name:role:hash;name:role:hash" (hashes made by `jobctl dashboard hash-password`)."""
    users = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        name, _, rest = entry.partition(":")
        role, _, password_hash = rest.partition(":")
        if not name or role not in ROLES or not password_hash:
            raise ConfigError(
                f"JOBS_DASHBOARD_USERS: {name or entry!r} needs name:role:hash with role viewer or operator"
            )
        users[name] = User(name, role, password_hash)
    return users


def is_loopback(address: str | None) -> bool:
    """Whether `address` is this machine (127.0.0.0/8, ::1, or the name localhost)."""
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return address == "localhost"


@dataclass(frozen=True)
class Access:
    """The security settings of one app."""

    users: dict[str, User]
    token: str

    @property
    def local_only(self) -> bool:
        """Neither users nor a token: only requests from this machine are served, as operator."""
        return not self.users and not self.token

    def check_password(self, name: str, password: str) -> User | None:
        user = self.users.get(name)
        if user is None:
            check_password_hash("scrypt:32768:8:1$x$" + "0" * 128, password)  # same time for unknown names
            return None
        return user if check_password_hash(user.password_hash, password) else None


def install(app: Flask, access: Access) -> None:
    """Authenticate every request, authorize POSTs for operators only, and check CSRF on every POST."""
    app.extensions["jobs.access"] = access

    @app.before_request
    def authenticate():
        if request.endpoint in ("pages.login", "static", "pages.metrics_public"):
            return None
        g.actor, g.role = _identify(access)
        if g.actor is None and access.local_only:
            abort(
                403, "this dashboard serves only its own machine: configure JOBS_DASHBOARD_USERS or a token"
            )
        if g.actor is None:
            if request.path.startswith(("/api/", "/metrics")):
                abort(401)
            return redirect(url_for("pages.login", next=request.full_path))
        if request.method == "POST":
            if g.role != "operator" and request.endpoint != "pages.logout":  # anyone may log out
                abort(403)
            check_csrf()
        return None

    @app.context_processor
    def security_context():
        return {"csrf_token": csrf_token(), "actor": g.get("actor"), "role": g.get("role"), "access": access}


def _identify(access: Access) -> tuple[str | None, str | None]:
    header = request.headers.get("Authorization", "")
    if access.token and header.startswith("Bearer "):
        if hmac.compare_digest(header[7:].encode(), access.token.encode()):
            g.token_auth = True
            return "token", "operator"
        return None, None
    if access.local_only:
        return (LOCAL_OPERATOR, "operator") if is_loopback(request.remote_addr) else (None, None)
    name = session.get("user")
    user = access.users.get(name) if name else None
    return (user.name, user.role) if user else (None, None)


def csrf_token() -> str:
    """This session's CSRF token (created on first use)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    """Abort with 400 unless the POST carries this session's CSRF token (or comes with a bearer token)."""
    if g.get("token_auth"):
        return  # a bearer token is not sent by browsers on their own: no CSRF risk
    if request.path.startswith("/rq/"):
        _check_same_origin()  # rq-dashboard's own pages cannot send our token: require our origin
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
        abort(400, "missing or wrong CSRF token; reload the page and try again")


def _check_same_origin() -> None:
    origin = request.headers.get("Origin") or request.headers.get("Referer") or ""
    if urlsplit(origin).netloc != request.host:
        abort(400, "cross-site request refused")


def login_user(user: User) -> None:
    session.clear()
    session["user"] = user.name
    csrf_token()
