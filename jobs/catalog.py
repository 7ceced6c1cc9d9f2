"""The @job decorator and the catalog of jobs by name: only catalogued jobs can be enqueued by name."""

from __future__ import annotations

import functools
import importlib
import inspect
import numbers
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from .config import queue_name_problem
from .durations import parse_duration
from .errors import ConfigError, InvalidArguments, UnknownJob

PLATFORM_MODULES = ("jobs.builtin", "jobs.billing")
DEFAULT_TIMEOUT = 300


@functools.lru_cache(maxsize=4096)
def _check_shape(func: Callable[..., Any], positional: int, names: tuple[str, ...]) -> None:
    """Whether arguments fit depends only on how many are positional and which are named, not on their
    values: each shape is bound once (binding costs more than the rest of an enqueue's own work)."""
    signature(func).bind(*range(positional), **dict.fromkeys(names))


@dataclass(frozen=True)
class JobSpec:
    """What the platform knows of a job: its function and its options."""

    name: str
    func: Callable[..., Any]
    queue: str = "default"
    retries: int = 3
    backoff: float | tuple[float, ...] = 5.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    no_retry_on: tuple[type[BaseException], ...] = ()
    timeout: int = DEFAULT_TIMEOUT
    result_ttl: int | None = None  # None: JOBS_SUCCEEDED_TTL
    failure_ttl: int | None = None  # None: JOBS_FAILED_TTL
    description: str = ""
    lock: str | None = None  # lock name template, e.g. "invoices:{month}"
    lock_ttl: float = 30.0
    lock_wait: float = 0.0  # seconds to wait for the lock before `on_locked` applies
    on_locked: str = "retry"  # "skip": succeed without running; "retry": fail under the retry policy
    unique: str | None = None  # unique key template, e.g. "invoice:{customer_id}:{month}"

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        """The arguments bound to the function's parameters; TypeError when they do not fit."""
        return signature(self.func).bind(*args, **kwargs)

    def check_fit(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Raise TypeError when the arguments do not fit the function's parameters."""
        _check_shape(self.func, len(args), tuple(kwargs))

    def render(self, template: str, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
        """`template` with its {fields} filled from the job's arguments (defaults included);
        InvalidArguments when an argument does not fit its field's format (`{n:05d}` given a string)."""
        bound = self.bind(args, kwargs)
        bound.apply_defaults()
        try:
            return template.format(**bound.arguments)
        except (ValueError, TypeError) as exc:
            raise InvalidArguments(f"{template!r} cannot be filled from these arguments: {exc}") from None


def _check_template(option: str, template: str | None, func: Callable) -> None:
    """ConfigError unless every job's arguments can fill `template`: each field it names (those in a
    field's format spec, `{tag:{width}}`, too) is a parameter of `func`, and each conversion is one
    `str.format` knows."""
    if template is None:
        return
    parameters = signature(func).parameters
    try:
        fields = _fields(template)
    except ValueError as exc:
        raise ConfigError(f"{option}={template!r} is not a valid template: {exc}") from None
    unknown = [field for field in fields if field not in parameters]
    if unknown:
        raise ConfigError(
            f"{option}={template!r} names {', '.join(unknown)}, which {func.__name__} has no parameter for"
        )


def _fields(template: str) -> list[str]:
    """The fields `template` names, nested ones included; ValueError for a template `format` refuses."""
    fields = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if conversion not in (None, "r", "s", "a"):
            raise ValueError(f"!{conversion} is not a conversion (use !r, !s or !a)")
        if field is not None:
            fields += [field, *_fields(spec or "")]
    return fields


def _backoff(value: float | Sequence[float]) -> float | tuple[float, ...]:
    """`value` as the spec keeps it, seconds: a number, or a sequence of them; ConfigError for anything
    else (a duration such as "5s" among them: `backoff_intervals` does maths on it)."""
    listed = isinstance(value, Sequence) and not isinstance(value, str)
    delays = tuple(value) if listed else (value,)
    if not all(isinstance(delay, numbers.Real) and not isinstance(delay, bool) for delay in delays):
        raise ConfigError(
            f"backoff={value!r}: give seconds as a number (backoff=5) or a list of them (backoff=[5, 60])"
        )
    return delays if listed else float(value)


def _exception_types(option: str, value: Iterable[type[BaseException]]) -> tuple[type[BaseException], ...]:
    """`value` as a tuple; ConfigError unless it holds exception classes (not their names)."""
    types = tuple(value) if isinstance(value, Iterable) and not isinstance(value, str) else (value,)
    wrong = [kind for kind in types if not (isinstance(kind, type) and issubclass(kind, BaseException))]
    if wrong:
        raise ConfigError(
            f"{option}={value!r}: {', '.join(map(repr, wrong))} is not an exception class; give the "
            "classes themselves, e.g. (ValueError, KeyError)"
        )
    return types


def _timeout(value: str | float) -> int:
    """`value` in whole seconds; ConfigError unless that is 1 or more (RQ's timeouts are whole seconds)."""
    seconds = int(parse_duration(value))
    if seconds < 1:
        raise ConfigError(f"timeout={value!r}: a job's timeout is 1 s at least (for a long job, say '1d')")
    return seconds


def _on_locked(value: str) -> tuple[str, float]:
    """("skip"|"retry", seconds to wait first) from "skip", "retry" or "wait:30s"."""
    if value in ("skip", "retry"):
        return value, 0.0
    if value.startswith("wait:"):
        return "retry", parse_duration(value[5:])
    raise ConfigError(f"on_locked={value!r}: use skip, retry or wait:DURATION (e.g. wait:30s)")


class Call(NamedTuple):
    """One run of a job with its arguments, for `jobs.enqueue_many`."""

    spec: JobSpec
    args: tuple
    kwargs: dict


signature = functools.cache(inspect.signature)  # enqueue checks every call's arguments against it


_catalog: dict[str, JobSpec] = {}


class JobFunction:
    """A catalogued job: call it to run the function here and now, or enqueue it to run on a worker.

    In `enqueue*`, the keywords `queue`, `job_id` and `depends_on` are options of the enqueue, not
    arguments of the job; a job that has parameters of those names is enqueued with `jobs.enqueue(...)`.
    """

    def __init__(self, spec: JobSpec):
        self.spec = spec
        functools.update_wrapper(self, spec.func)

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, *args, **kwargs):
        return self.spec.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<job {self.spec.name}>"

    def enqueue(self, *args, queue: str | None = None, job_id: str | None = None, depends_on=None, **kwargs):
        """Enqueue a run with these arguments now; returns the job (its `.id` names it)."""
        from .enqueue import enqueue

        return enqueue(self.spec, args, kwargs, queue=queue, job_id=job_id, depends_on=depends_on)

    def call(self, *args, **kwargs) -> Call:
        """A run of this job with these arguments, for `jobs.enqueue_many([...])`."""
        return Call(self.spec, args, kwargs)

    def enqueue_in(
        self,
        delay: timedelta | float | str,
        *args,
        queue: str | None = None,
        job_id: str | None = None,
        **kwargs,
    ):
        """Enqueue a run that becomes due after `delay` (a timedelta, seconds, or "10m")."""
        from .enqueue import enqueue

        return enqueue(self.spec, args, kwargs, queue=queue, job_id=job_id, delay=delay)

    def enqueue_at(
        self, when: datetime, *args, queue: str | None = None, job_id: str | None = None, **kwargs
    ):
        """Enqueue a run that becomes due at `when` (a time-zone aware datetime)."""
        from .enqueue import enqueue

        return enqueue(self.spec, args, kwargs, queue=queue, job_id=job_id, at=when)


def job(
    func: Callable | None = None,
    *,
    queue: str = "default",
    retries: int = 3,
    backoff: float | Sequence[float] = 5.0,
    retry_on: Iterable[type[BaseException]] = (Exception,),
    no_retry_on: Iterable[type[BaseException]] = (),
    timeout: str | float = DEFAULT_TIMEOUT,
    result_ttl: str | float | None = None,
    failure_ttl: str | float | None = None,
    description: str = "",
    name: str | None = None,
    lock: str | None = None,
    lock_ttl: str | float = 30,
    on_locked: str = "retry",
    unique: str | None = None,
):
    """Register `func` in the catalog under `name` (default: module path + function name).

    Usable bare (`@job`) or with options (`@job(queue="critical", retries=5, timeout="5m")`).
    `lock="invoices:{month}"` runs at most one job per rendered name at a time; when it is held,
    `on_locked` says what happens: "retry" (default, under the retry policy), "skip" (succeed without
    running) or "wait:30s" (wait for it, then retry). `unique="invoice:{customer_id}:{month}"` makes
    enqueueing return the pending job with the same key instead of adding another.
    """

    def register(function: Callable) -> JobFunction:
        if retries < 0:
            raise ConfigError(f"retries must be >= 0, not {retries}")
        if problem := queue_name_problem(queue):
            raise ConfigError(f"queue={queue!r}: {problem}")
        _check_template("lock", lock, function)
        _check_template("unique", unique, function)
        locked_action, lock_wait = _on_locked(on_locked)
        if lock is not None and parse_duration(lock_ttl) < 0.001:  # Redis keeps a lock 1 ms at least
            raise ConfigError(f"lock_ttl={lock_ttl!r}: a lock must be kept 1 ms at least")
        spec = JobSpec(
            name=name or f"{function.__module__}.{function.__qualname__}",
            func=function,
            queue=queue,
            retries=retries,
            backoff=_backoff(backoff),
            retry_on=_exception_types("retry_on", retry_on),
            no_retry_on=_exception_types("no_retry_on", no_retry_on),
            timeout=_timeout(timeout),
            result_ttl=None if result_ttl is None else int(parse_duration(result_ttl)),
            failure_ttl=None if failure_ttl is None else int(parse_duration(failure_ttl)),
            description=description or (function.__doc__ or "").strip().split("\n")[0],
            lock=lock,
            lock_ttl=parse_duration(lock_ttl),
            lock_wait=lock_wait,
            on_locked=locked_action,
            unique=unique,
        )
        _check_name_free(spec)
        _catalog[spec.name] = spec
        return JobFunction(spec)

    return register(func) if func is not None else register


def _check_name_free(spec: JobSpec) -> None:
    """ConfigError when another function is catalogued under `spec`'s name: which one ran would depend on
    the order modules were imported in. The same function registered again (a module reloaded) is not
    another."""
    taken = _catalog.get(spec.name)
    if taken is not None and _origin(taken.func) != _origin(spec.func):
        module, qualname = _origin(taken.func)
        raise ConfigError(
            f"job name {spec.name!r} is taken by {module}.{qualname}; give one of them another name"
        )


def _origin(func: Callable) -> tuple[str, str]:
    return func.__module__, func.__qualname__


def get(name: str) -> JobSpec:
    """The spec of the job called `name`; UnknownJob (listing the known names) if there is none."""
    try:
        return _catalog[name]
    except KeyError:
        known = ", ".join(sorted(_catalog)) or "none (set JOBS_IMPORTS or --import)"
        raise UnknownJob(f"unknown job {name!r}; known jobs: {known}") from None


def names() -> list[str]:
    """Every catalogued job name, sorted."""
    return sorted(_catalog)


def load(modules: Iterable[str]) -> None:
    """Import the platform's job modules and `modules`, so their @job functions are catalogued."""
    for module in (*PLATFORM_MODULES, *modules):
        if not all(part.isidentifier() for part in module.split(".")):
            raise ConfigError(f"cannot import job module {module!r}: it is not a dotted module name")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"cannot import job module {module!r}: {exc}") from None
