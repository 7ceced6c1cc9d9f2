"""What every `jobctl` command shares: --redis-url/--import/--json, settings, the connection, output,
and turning user errors into one line and exit code 2."""

from __future__ import annotations

import functools
import json
import logging
import sys

import click
import redis

from . import catalog
from .config import Settings
from .connection import Context, activate
from .errors import InvalidArguments, JobsError
from .keys import storable

EXIT_USER_ERROR = 2


def fail(message: str) -> None:
    """Print `error: message` on stderr and exit with code 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USER_ERROR)


def common(func):
    """Options every command has; builds the Settings and hands them to the command as `settings`."""

    @click.option(
        "--redis-url",
        envvar="JOBS_REDIS_URL",
        help="Job store URL (default: $JOBS_REDIS_URL or redis://127.0.0.1:6379/1).",
    )
    @click.option(
        "--import",
        "imports",
        multiple=True,
        help="Module whose @job functions to load (repeatable; adds to $JOBS_IMPORTS).",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @functools.wraps(func)
    def wrapper(redis_url, imports, as_json, **kwargs):
        try:
            _check_text(click.get_current_context())
            settings = Settings.from_env(redis_url=redis_url)
            settings = settings.with_(imports=(*settings.imports, *imports))
            logging.basicConfig(
                level=settings.log_level,
                format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
                stream=sys.stderr,
            )
            catalog.load(settings.imports)
            return func(settings=settings, as_json=as_json, **kwargs)
        except JobsError as exc:
            fail(str(exc))
        except redis.RedisError as exc:
            fail(f"Redis error: {exc}")

    return wrapper


def _check_text(ctx: click.Context) -> None:
    """Refuse an argument that is not UTF-8: the shell passed bytes that Python could only decode to
    surrogates, which no job, queue or key name can hold."""
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        for text in value if isinstance(value, tuple) else (value,):
            if isinstance(text, str) and not storable(text):
                raise InvalidArguments(f"{param.get_error_hint(ctx)} is not valid UTF-8 text: {text!r}")


def connect(settings: Settings, resilient: bool = False) -> Context:
    """Connect (failing fast with one line) and make the context the active one."""
    return activate(Context.connect(settings, resilient=resilient))


def emit(as_json: bool, data, human) -> None:
    """Print `data` as JSON, or call `human()` to print it for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        human()


def parse_json(option: str, text: str, kind: type):
    """Parse the JSON value of `option`, which must be of type `kind` (list or dict)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArguments(f"{option} is not valid JSON: {exc}") from None
    except ValueError:  # Python refuses to convert integers of over 4300 digits
        raise InvalidArguments(f"{option} has a number with too many digits") from None
    except RecursionError:
        raise InvalidArguments(f"{option} is nested too deeply") from None
    if not isinstance(value, kind):
        raise InvalidArguments(f"{option} must be a JSON {'array' if kind is list else 'object'}")
    return value
