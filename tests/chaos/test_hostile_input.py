"""Chaos scenario 6, hostile input: hypothesis fuzzes every way in that people and scripts control
(`jobctl` arguments, schedule definitions in Python and in TOML files, the dashboard's JSON API, its HTML
forms and the query strings of its pages) against a real server, and proves that

- an input is either accepted, or refused with a clear message: exactly one `error:` line on stderr and
  exit code 2 from `jobctl`, a `JobsError` from the Python API, a status below 500 with a JSON
  `{"error": ...}` from the API; never a traceback, never an HTTP 500;
- a refused input writes nothing: Redis holds exactly what it held before (every key and its value);
- what is accepted is stored as given (a schedule reads back equal to its definition), a GET never writes,
  and a form post without the session's CSRF token is refused with nothing written.

Every example starts from the same seeded store (jobs in several states, two schedules, a held lock, an
audit entry), restored before it. The runs are derandomized, so CI sees the same examples every time; the
inputs that once broke something are pinned with @example. (Garbage planted in Redis: test_worker.py.)
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, quote_from_bytes, urlsplit

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from dashboard import actions, bulk, create_app
from jobs import admin, catalog, inspect, locks, recurring
from jobs.cli import main
from jobs.connection import Context, activate
from jobs.errors import JobsError
from tests import sample_jobs
from tests.conftest import TEST_JOBS, jobctl, make_settings, wait_for

JOB = "tests.sample_jobs.record"  # one argument, `tag`
ADD = "tests.sample_jobs.add"  # two arguments, `a` and `b`
SEEDED_JOBS = ("seed-failed", "seed-queued", "seed-later", "seed-canceled")
SEEDED_SCHEDULES = ("by-hand", "synced")  # added by hand, and by `schedules sync`
SEEDED_LOCK = "seed:lock"
CSRF = "csrf-token-of-this-session"
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}

FUZZ = settings(
    derandomize=True,  # the same examples on every run, so CI is reproducible
    database=None,
    deadline=None,  # a shared 2-core machine: time is not the property under test
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def fuzz(examples: int) -> settings:
    """The settings of this module's properties, with `examples` generated examples (explicit ones
    come on top)."""
    return settings(FUZZ, max_examples=examples)


# --- the seeded store, restored before every example --------------------------------------------------

Snapshot = dict[bytes, tuple[bytes, object]]
READ = {  # how to read a key of each type whole
    b"string": lambda pipe, key: pipe.get(key),
    b"hash": lambda pipe, key: pipe.hgetall(key),
    b"list": lambda pipe, key: pipe.lrange(key, 0, -1),
    b"set": lambda pipe, key: pipe.smembers(key),
    b"zset": lambda pipe, key: pipe.zrange(key, 0, -1, withscores=True),
    b"stream": lambda pipe, key: pipe.xrange(key),
    b"none": lambda pipe, key: pipe.exists(key),  # expired since the scan
}


def snapshot(redis) -> Snapshot:
    """Every key of the DB with its type and value: equal snapshots mean that nothing was written in
    between. (Not DUMP: its bytes follow a hash table's order, which Redis changes without a write.)"""
    keys = sorted(redis.scan_iter(count=1000))
    with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.type(key)
        kinds = pipe.execute()
        for key, kind in zip(keys, kinds, strict=True):
            READ[kind](pipe, key)
        values = pipe.execute()
    return {key: (kind, value) for key, kind, value in zip(keys, kinds, values, strict=True)}


@dataclass(frozen=True)
class Seed:
    """The seeded keys as (key, milliseconds to live or 0, DUMP)."""

    entries: list[tuple[bytes, int, bytes]]


@pytest.fixture(scope="module")
def seed(redis_url) -> Seed:
    """Jobs that failed, wait, wait for a time and were canceled, two schedules (one with a run), a held
    lock and an audit entry, dumped once for the module."""
    catalog.load([TEST_JOBS])
    context = activate(Context.connect(make_settings(redis_url)))
    context.redis.flushdb()
    sample_jobs.fails_without_retry.enqueue("seed", job_id="seed-failed")
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    sample_jobs.record.enqueue("waiting", job_id="seed-queued")
    sample_jobs.record.enqueue_in(timedelta(hours=1), "later", job_id="seed-later")
    sample_jobs.record.enqueue("never", job_id="seed-canceled")
    admin.cancel_job(context, "seed-canceled", actor="seed")
    recurring.schedule("by-hand", JOB, cron="0 2 * * *", tz="Europe/Berlin", args=["x"], context=context)
    recurring.sync(context, [recurring.define("synced", JOB, every="1h", args=["y"])])
    admin.trigger_schedule(context, "by-hand", actor="seed")
    with locks.lock(SEEDED_LOCK, ttl=600, context=context):
        keys = sorted(context.redis.scan_iter(count=1000))
        with context.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(key)
                pipe.dump(key)
            values = pipe.execute()
    context.redis.close()
    return Seed(
        [(key, max(ttl, 0), dump) for key, ttl, dump in zip(keys, values[::2], values[1::2], strict=True)]
    )


class Store:
    """The test DB: reset to the seed before each example, and checked against it afterwards."""

    def __init__(self, context: Context, seed: Seed) -> None:
        self.context, self.seed = context, seed
        self.reset()
        self.baseline = snapshot(context.redis)

    def reset(self) -> None:
        """Put back exactly the seeded keys, in one transaction."""
        with self.context.redis.pipeline() as pipe:
            pipe.flushdb()
            for key, ttl, dump in self.seed.entries:
                pipe.restore(key, ttl, dump)
            pipe.execute()

    def assert_unchanged(self, what: object) -> None:
        """Fail, naming the keys, unless Redis holds exactly the seed."""
        now = snapshot(self.context.redis)
        changed = sorted(
            key for key in now.keys() | self.baseline.keys() if now.get(key) != self.baseline.get(key)
        )
        assert not changed, f"{what!r} wrote to Redis although it was refused or only read: {changed}"


@pytest.fixture
def store(context, seed) -> Store:
    return Store(context, seed)


class Tally:
    """Counts the examples a property ran, accepted and refused, and reports them past pytest's capture."""

    def __init__(self, capsys) -> None:
        self.capsys, self.accepted, self.refused = capsys, 0, 0

    def __call__(self, accepted: bool) -> None:
        if accepted:
            self.accepted += 1
        else:
            self.refused += 1

    def report(self, what: str) -> None:
        with self.capsys.disabled():
            print(
                f" [{self.accepted + self.refused} {what}: {self.accepted} accepted, {self.refused} refused]",
                end="",
            )


@pytest.fixture
def tally(capsys) -> Tally:
    return Tally(capsys)


# --- strategies -------------------------------------------------------------------------------------

TRICKY = (
    *("", " ", "\x00", "\n", "\r\n", "\t", "\x1b[31m", "\u202eevil", "é", "日本", "🙂"),
    *("-", "--", "-h", "--help", "null", "true", "[]", "{}", "[1,", "NaN", "-Infinity", "-1", "0"),
    *("1e999", "9" * 5000, "../../etc/passwd", "%s%n", "{0}{name}", "*", "'; DROP TABLE jobs;--"),
    *("<script>alert(1)</script>", "a" * 10_000),
)
UNDECODABLE = st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)  # argv bytes that are not UTF-8
JSON_TEXTS = ("[", "[1,]", "{'a': 1}", '{"a": }', "[" * 5000, "[" + "9" * 5000 + "]", '["\\ud800"]')


def mostly(good: SearchStrategy, bad: SearchStrategy, odds: int = 6) -> SearchStrategy:
    """`good` values, and one time in `odds` a `bad` one: most examples then have one bad part, so that
    every check is reached, and some have none, so that what is accepted is checked too."""
    return st.sampled_from(range(odds)).flatmap(lambda draw: bad if draw == odds - 1 else good)


def containers(inner: SearchStrategy, size: int) -> SearchStrategy:
    """Arrays and objects (tables) of up to `size` values of `inner`."""
    return st.lists(inner, max_size=size) | st.dictionaries(st.text(max_size=10), inner, max_size=size)


def json_values() -> SearchStrategy:
    """Any JSON value: null, booleans, numbers (also NaN and infinities), strings, arrays, objects."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    return st.recursive(scalars, lambda inner: containers(inner, 4), max_leaves=8)


def hostile_text(undecodable: bool = True) -> SearchStrategy[str]:
    """Text nobody should type: controls, odd scripts, huge numbers, JSON, paths, format strings; with
    `undecodable`, also the surrogates Python makes of argv bytes that are not UTF-8."""
    choices = [
        st.sampled_from(TRICKY),
        st.text(max_size=40),
        st.integers().map(str),
        st.integers(min_value=10**15, max_value=10**80).map(lambda n: str(n * (-1) ** n)),
        st.floats().map(repr),
        json_values().map(json.dumps),
    ]
    if undecodable:
        choices.append(st.text(st.characters() | UNDECODABLE, max_size=10).map(lambda text: text + "\udcff"))
    return st.one_of(choices)


def arguments_json() -> SearchStrategy[str]:
    """--args of `record(tag)`: one JSON value in an array; else other JSON, malformed JSON, hostile text."""
    bad = st.one_of(json_values().map(json.dumps), st.sampled_from(JSON_TEXTS), hostile_text())
    return mostly(json_values().map(lambda value: json.dumps([value])), bad)


def keywords_json() -> SearchStrategy[str]:
    """--kwargs: an empty object; else other JSON, malformed JSON, hostile text."""
    return mostly(
        st.just("{}"), st.one_of(json_values().map(json.dumps), st.sampled_from(JSON_TEXTS), hostile_text())
    )


def numbers(undecodable: bool = True) -> SearchStrategy[str]:
    """Counts and page numbers as text; else zero, negative and huge ones, and hostile text."""
    bad = st.one_of(
        st.integers(max_value=0).map(str), st.integers(min_value=10**9).map(str), hostile_text(undecodable)
    )
    return mostly(st.integers(1, 50).map(str), bad)


def durations() -> SearchStrategy[str]:
    """Durations as people write them; else wrong, fractional, huge ones, and hostile text."""
    good = st.builds("{}{}".format, st.integers(1, 10**5), st.sampled_from(["", "s", "m", "h", "d"]))
    written = st.builds(
        "{}{}".format,
        st.integers(0, 10**30) | st.floats(min_value=0, allow_infinity=True),
        st.sampled_from(["", "ms", "s", "m", "h", "d", "w", " s"]),
    )
    odd = st.sampled_from(["0", "500ms", "0.5s", "-1s", "1e3", "١٢s", " 1 s ", "1s\n"])
    return mostly(good, st.one_of(odd, written, hostile_text()))


def moments(undecodable: bool = True) -> SearchStrategy[str]:
    """ISO 8601 times with an offset; else without one, at the ends of the calendar, and hostile text."""
    offsets = st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ).map(timezone)
    soon = st.datetimes(min_value=datetime(2027, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets)
    extremes = ["0001-01-01T00:00:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999"]
    extremes += ["9999-12-31T23:59:59-12:00", "2026-02-30T00:00:00Z", "2026-12-01", "yesterday"]
    bad = st.one_of(
        st.sampled_from(extremes),
        st.datetimes(timezones=st.none() | offsets).map(datetime.isoformat),
        hostile_text(undecodable),
    )
    return mostly(soon.map(datetime.isoformat), bad)


CRON_FIELDS = ["*", "0", "59", "60", "*/0", "*/7", "1-5", "5-1", "31", "30", "29", "2", "L", "15W", "FEB"]
CRON_FIELDS += ["MON#5", "L1", "?", "H", "-1", "99999999999999999999"]


def crons() -> SearchStrategy[str]:
    """Cron expressions (some never fire: 0 0 31 2 *); else wrong ones, random fields, hostile text."""
    good = st.builds(
        "{} {} {} {} {}".format,
        st.sampled_from(["*", "0", "*/5", "15,45"]) | st.integers(0, 59),
        st.sampled_from(["*", "0", "9-17", "*/6"]) | st.integers(0, 23),
        st.sampled_from(["*", "1", "L", "15W"]) | st.integers(1, 31),
        st.sampled_from(["*", "FEB", "*/3"]) | st.integers(1, 12),
        st.sampled_from(["*", "MON-FRI", "0", "5#5", "L1"]),
    )
    known = st.sampled_from(["@hourly", "* * * * * *", "* * * *", "0 0 31 4,6,9,11 *"])
    fields = st.lists(st.sampled_from(CRON_FIELDS), min_size=4, max_size=6).map(" ".join)
    return mostly(good, st.one_of(known, fields, hostile_text()))


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "America/St_Johns", "Asia/Kathmandu", "Asia/Tehran"]
ZONES += ["Australia/Lord_Howe", "Pacific/Chatham", "Pacific/Kiritimati", "Etc/GMT+12"]  # odd offsets, DST


def zones() -> SearchStrategy[str]:
    """IANA zone names (a fixed list, so that examples do not depend on the machine's tzdata); else wrong
    ones, a directory of tzdata, paths, and hostile text."""
    wrong = ["", "Europe", "Europe/Atlantis", "../etc/passwd", "/etc/localtime", "UTC\x00", "utc", "a" * 300]
    return mostly(st.sampled_from(ZONES), st.sampled_from(wrong) | hostile_text())


def policies(known: tuple[str, ...]) -> SearchStrategy[str]:
    """A misfire or overlap policy; else hostile text."""
    return mostly(st.sampled_from(known), hostile_text())


def schedule_ids(undecodable: bool = True) -> SearchStrategy[str]:
    """Ids of the seeded schedules and valid new ones; else too long ones and hostile text."""
    valid = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)
    bad = st.sampled_from(["a" * 129, "-x", "x y", "é"]) | hostile_text(undecodable)
    return mostly(st.sampled_from(SEEDED_SCHEDULES) | valid, bad)


def job_names(undecodable: bool = True) -> SearchStrategy[str]:
    """The name of `record(tag)`; else other jobs' names (other parameters) and hostile text."""
    return mostly(st.just(JOB), st.sampled_from([ADD, "jobs.builtin.noop"]) | hostile_text(undecodable))


def job_ids(undecodable: bool = True) -> SearchStrategy[str]:
    """Ids of the seeded jobs; else hostile text."""
    return mostly(st.sampled_from(SEEDED_JOBS), hostile_text(undecodable))


def lock_names(undecodable: bool = True) -> SearchStrategy[str]:
    """The held lock's name; else hostile text."""
    return mostly(st.just(SEEDED_LOCK), hostile_text(undecodable))


def texts(undecodable: bool = True) -> SearchStrategy[str]:
    """Free text (a description, a queue name); else hostile text."""
    return mostly(st.text(st.characters(codec="utf-8"), max_size=20), hostile_text(undecodable))


# --- 1. jobctl arguments ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How a `jobctl` run ended."""

    code: int
    stdout: str
    stderr: str


def jobctl_here(url: str, path: list[str], rest: list[str]) -> Outcome:
    """Run `jobctl PATH --redis-url URL --import tests.sample_jobs REST` in this process, through the
    console script's own entry point, with click's stand-ins for stdin, stdout and stderr."""
    with CliRunner().isolation() as (stdout, stderr, _):
        try:
            main([*path, "--redis-url", url, "--import", TEST_JOBS, *rest])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return Outcome(code, stdout.getvalue().decode(), stderr.getvalue().decode())


def assert_clean(outcome: Outcome, store: Store, argv: object, writes: bool = True) -> None:
    """Success (exit 0), or one `error:` line, exit code 2, nothing on stdout and nothing written; never a
    traceback on stderr (`show` prints a failed job's on stdout). Without `writes`, the command only reads:
    it never writes, even when it succeeds."""
    assert "Traceback" not in outcome.stderr, (argv, outcome)
    if outcome.code != 0:
        assert outcome.code == 2, (argv, outcome)
        lines = outcome.stderr.rstrip("\n").split("\n")
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, outcome)
        assert outcome.stdout == "", (argv, outcome)
    if outcome.code != 0 or not writes:
        store.assert_unchanged(argv)


def opt(flag: str, values: SearchStrategy[str]) -> SearchStrategy[list[str]]:
    """`[flag, value]`, or nothing."""
    return st.just([]) | values.map(lambda value: [flag, value])


NO_POSITIONALS: SearchStrategy[list[str]] = st.just([])


def command(
    path: list[str],
    *options: SearchStrategy[list[str]],
    positionals: SearchStrategy[list[str]] = NO_POSITIONALS,
) -> SearchStrategy[tuple[list[str], list[str]]]:
    """(path, rest) of one command: the fuzzed options, then `--` and the positionals, so that a
    positional which looks like an option (`--redis-url`) stays a positional."""
    return st.tuples(st.tuples(*options), positionals).map(
        lambda parts: (path, [*(item for pair in parts[0] for item in pair), "--", *parts[1]])
    )


def one(*strategies: SearchStrategy[str]) -> SearchStrategy[list[str]]:
    """The positionals given by `strategies`, in order."""
    return st.tuples(*strategies).map(list)


WRITING = st.one_of(
    command(
        ["enqueue"],
        st.builds(lambda value: ["--args", value], arguments_json()),
        opt("--kwargs", keywords_json()),
        opt("--queue", texts()),
        opt("--in", durations()) | opt("--at", moments()),
        positionals=one(job_names()),
    ),
    command(
        ["schedules", "add"],
        mostly(
            opt("--cron", crons()) | opt("--every", durations()),
            st.tuples(opt("--cron", crons()), opt("--every", durations())).map(
                lambda both: both[0] + both[1]
            ),
        ),
        opt("--tz", zones()),
        opt("--queue", texts()),
        st.builds(lambda value: ["--args", value], arguments_json()),
        opt("--kwargs", keywords_json()),
        opt("--misfire", policies(recurring.MISFIRE_POLICIES)),
        opt("--overlap", policies(recurring.OVERLAP_POLICIES)),
        opt("--description", texts()),
        positionals=one(schedule_ids(), job_names()),
    ),
    command(["schedules", "pause"], opt("--until", moments()), positionals=one(schedule_ids())),
    *(
        command(["schedules", verb], positionals=one(schedule_ids()))
        for verb in ("resume", "trigger", "remove")
    ),
    *(
        command(
            ["failed", verb], st.just([]) | st.just(["--all"]), positionals=st.lists(job_ids(), max_size=3)
        )
        for verb in ("requeue", "delete")
    ),
    command(["locks", "release"], st.just(["--yes"]), positionals=one(lock_names())),
)
MODULES = (
    st.sampled_from(["", ".x", "..", "a..b", "x.", "1abc", "jobs.nope", "json.decoder."]) | hostile_text()
)
READING = st.one_of(
    command(["show"], positionals=one(job_ids())),
    command(
        ["list"],
        opt("--import", mostly(st.sampled_from(["jobs.builtin", "tests.sample_jobs"]), MODULES)),
        opt("--state", mostly(st.sampled_from(inspect.STATES), hostile_text())),
        opt("--queue", texts()),
        opt("--name", job_names()),
        opt("--page", numbers()),
        opt("--per-page", numbers()),
    ),
    command(["schedules", "show"], opt("--runs", numbers()), positionals=one(schedule_ids())),
    command(["schedules", "next"], opt("-n", numbers()), positionals=one(schedule_ids())),
    command(["schedules", "list"]),
    command(["locks", "list"]),
)


def test_jobctl_arguments_are_accepted_or_refused_in_one_line_without_writing(store, redis_url, tally):
    @fuzz(600)
    @given(argv=WRITING)
    @example(argv=(["enqueue"], ["--args", '["x"]', "--in", "99999999999999d", "--", JOB]))
    @example(argv=(["enqueue"], ["--args", '["x"]', "--at", "9999-12-31T23:59:59.5+00:00", "--", JOB]))
    @example(argv=(["enqueue"], ["--args", "[" * 5000, "--", JOB]))
    @example(argv=(["enqueue"], ["--args", "[" + "9" * 5000 + "]", "--", JOB]))
    @example(argv=(["enqueue"], ["--args", '["x"]', "--queue", "\udcff", "--", JOB]))
    @example(argv=(["schedules", "add"], ["--cron", "0 0 31 2 *", "--args", '["x"]', "--", "s", JOB]))
    @example(argv=(["schedules", "add"], ["--every", "100000000d", "--args", '["x"]', "--", "s", JOB]))
    @example(argv=(["schedules", "add"], ["--every", "1s", "--description", "\udcff", "--", "s", JOB]))
    @example(argv=(["schedules", "trigger"], ["--", "\udcff"]))
    @example(argv=(["failed", "requeue"], ["--", "\udcff"]))
    @example(argv=(["locks", "release"], ["--yes", "--", "\udcff"]))
    def writing(argv):
        store.reset()
        outcome = jobctl_here(redis_url, *argv)
        assert_clean(outcome, store, argv)
        tally(outcome.code == 0)

    @fuzz(300)
    @given(argv=READING)
    @example(argv=(["schedules", "next"], ["-n", "99999999999", "--", "by-hand"]))
    @example(argv=(["show"], ["--", "\udcff"]))
    @example(argv=(["list"], ["--queue", "\udcff", "--"]))
    @example(argv=(["list"], ["--import", "", "--"]))
    @example(argv=(["list"], ["--import", ".x", "--"]))
    def reading(argv):
        store.reset()
        outcome = jobctl_here(redis_url, *argv)
        assert_clean(outcome, store, argv, writes=False)
        tally(outcome.code == 0)

    writing()
    reading()
    tally.report("jobctl argument lists")


@pytest.mark.parametrize(
    "argv",
    [
        ["show", "\udcff"],  # the bytes b"\xff": not UTF-8
        ["enqueue", JOB, "--args", '["x"]', "--queue", "caf\udce9"],  # Latin-1 from an old terminal
        ["enqueue", JOB, "--args", "[" * 50_000],
        ["enqueue", JOB, "--args", '["x"]', "--in", "99999999999999d"],
        ["schedules", "add", "s", JOB, "--cron", "0 0 31 2 *", "--args", '["x"]'],
        ["schedules", "next", "by-hand", "-n", "99999999999"],
    ],
    ids=["undecodable-id", "undecodable-queue", "deep-json", "endless-delay", "never-fires", "endless-next"],
)
def test_the_real_jobctl_process_refuses_in_one_line(store, redis_url, argv):
    result = jobctl(*argv, url=redis_url, timeout=30)
    outcome = Outcome(result.returncode, result.stdout, result.stderr)
    assert_clean(outcome, store, argv)
    assert outcome.code == 2, outcome


# --- 2. schedule definitions: the Python API and `jobctl schedules sync` ----------------------------------


def anything() -> SearchStrategy:
    """Values of every type a caller might pass by mistake."""
    return st.one_of(
        json_values(),
        st.binary(max_size=8),
        st.tuples(st.integers(), st.text(max_size=4)),
        st.datetimes(),
        st.sets(st.integers(), max_size=3),
        st.just(object()),
        st.just(sample_jobs.record),
    )


def definitions(arguments: SearchStrategy, bad: SearchStrategy) -> SearchStrategy[dict]:
    """Options of `recurring.define` (the keys of a schedules file): a cron expression or an interval,
    `arguments` for `record(tag)`, and some of the other options; now and then a `bad` value instead."""
    timing = mostly(
        st.fixed_dictionaries({"cron": crons()}) | st.fixed_dictionaries({"every": durations()}),
        st.fixed_dictionaries(
            {}, optional={"cron": crons() | bad, "every": durations() | st.integers() | bad}
        ),
    )
    options = {
        "tz": zones(),
        "queue": texts(),
        "kwargs": st.just({}),
        "misfire": policies(recurring.MISFIRE_POLICIES),
        "overlap": policies(recurring.OVERLAP_POLICIES),
        "description": texts(),
    }
    rest = st.fixed_dictionaries(
        {"args": mostly(arguments, bad)},
        optional={key: mostly(good, bad) for key, good in options.items()},
    )
    return st.tuples(timing, rest).map(lambda parts: parts[0] | parts[1])


def definition_of(stored: recurring.Schedule) -> recurring.Schedule:
    """`stored` without its runtime state (pause, times, last run): what a definition says."""
    return replace(
        stored, paused_until=None, created=0.0, updated=0.0, next_fire=None, last_fire=None, last_job_id=None
    )


def test_schedules_from_python_are_stored_as_given_or_refused_without_writing(store, tally):
    @fuzz(400)
    @given(
        schedule_id=mostly(schedule_ids(), anything()),
        job=mostly(st.just(JOB) | st.just(sample_jobs.record), job_names() | anything()),
        options=definitions(
            st.lists(json_values(), min_size=1, max_size=1).map(tuple) | st.just([(1, 2)]), anything()
        ),
    )
    @example(schedule_id="s", job=JOB, options={"cron": "0 0 31 2 *", "args": ["x"]})
    @example(schedule_id="s", job=JOB, options={"every": 10**30, "args": ["x"]})
    @example(schedule_id="s", job=JOB, options={"cron": 5, "args": ["x"]})
    @example(schedule_id="s", job=JOB, options={"every": "1s", "tz": ["UTC"], "args": ["x"]})
    @example(schedule_id="s", job=JOB, options={"every": "1s", "tz": (0, ""), "args": ["x"]})
    @example(schedule_id="s", job=JOB, options={"every": "1s", "tz": "Europe", "args": ["x"]})
    @example(schedule_id="s", job=JOB, options={"every": "1s", "tz": "a" * 300, "args": ["x"]})
    @example(schedule_id="s", job=JOB, options={"every": "1s", "args": "x"})
    @example(schedule_id="s", job=JOB, options={"every": "1s", "args": [(1, 2)]})
    @example(schedule_id="s", job=JOB, options={"every": "1s", "args": ["x"], "queue": 5})
    @example(schedule_id="s", job=JOB, options={"every": "1s", "args": ["x"], "queue": ""})
    @example(schedule_id="s", job=JOB, options={"every": "1s", "args": ["x"], "description": "\udcff"})
    def defines(schedule_id, job, options):
        store.reset()
        try:
            saved = recurring.schedule(schedule_id, job, context=store.context, **options)
        except JobsError:
            store.assert_unchanged((schedule_id, job, options))
            tally(False)
            return
        assert recurring.get(store.context, saved.id) == saved
        tally(True)

    defines()
    tally.report("schedule definitions")


def toml_string(text: str) -> str:
    """`text` as a TOML basic string: JSON's escapes, which TOML shares, but characters beyond U+FFFF as
    themselves (TOML has no surrogate pairs), and DEL and lone surrogates escaped (TOML refuses those)."""
    quoted = json.dumps(text, ensure_ascii=False)
    return "".join(
        f"\\u{ord(char):04x}" if char == "\x7f" or "\ud800" <= char <= "\udfff" else char for char in quoted
    )


def toml_value(value) -> str:
    """`value` written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{toml_string(key)} = {toml_value(item)}" for key, item in value.items()) + "}"
        )
    return toml_string(value)


def toml_values() -> SearchStrategy:
    """Every kind of TOML value: strings, integers, floats, booleans, times, arrays, inline tables."""
    scalars = st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.datetimes()
    return st.recursive(scalars, lambda inner: containers(inner, 3), max_leaves=6)


ENTRIES = st.tuples(
    st.fixed_dictionaries({"job": mostly(st.just(JOB), job_names() | toml_values())}),
    definitions(st.lists(toml_values(), min_size=1, max_size=1), toml_values()),
    mostly(
        st.just({}), st.fixed_dictionaries({}, optional={"managed": toml_values(), "colour": toml_values()})
    ),
).map(lambda parts: parts[0] | parts[1] | parts[2])


def schedule_file(entries: dict[str, dict]) -> str:
    """A schedules file with one [schedules.ID] table per entry."""
    return "".join(
        f"[schedules.{toml_string(schedule_id)}]\n"
        + "".join(f"{key} = {toml_value(value)}\n" for key, value in entry.items())
        for schedule_id, entry in entries.items()
    )


SCHEDULE_FILES = mostly(
    st.dictionaries(schedule_ids(), ENTRIES, max_size=3).map(schedule_file),
    st.one_of(
        st.sampled_from(["", "schedules = 5", "schedules = [1]", "[schedules]\na = 5", "[schedules.a]\n"]),
        st.text(max_size=60),
        st.binary(max_size=30).map(lambda raw: raw.decode("utf-8", "surrogateescape")),  # not UTF-8
    ),
)


def assert_synced(context: Context, path: Path) -> None:
    """After a successful sync of `path`: every schedule in it is stored as defined, the schedule added by
    hand is left alone, and the one an earlier sync created is gone unless the file still has it."""
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("schedules", {})
    for schedule_id, entry in entries.items():
        options = {key: value for key, value in entry.items() if key != "job"}
        expected = recurring.define(schedule_id, entry["job"], managed=True, **options)
        assert definition_of(recurring.get(context, schedule_id)) == expected
    stored = {schedule.id for schedule in recurring.all_schedules(context)}
    assert "by-hand" in stored and ("synced" in stored) == ("synced" in entries)


def test_schedule_files_are_synced_as_written_or_refused_without_writing(store, redis_url, tmp_path, tally):
    path = tmp_path / "schedules.toml"

    @fuzz(300)
    @given(text=SCHEDULE_FILES)
    @example(text="schedules = 5")
    @example(text="\udcff\udcfe")
    @example(
        text=schedule_file(
            {"a": {"job": JOB, "every": "1s", "args": ["x"]}, "b": {"job": JOB, "cron": "0 0 31 2 *"}}
        )
    )
    @example(text=schedule_file({"a": {"job": JOB, "every": "1s", "args": "x"}}))
    @example(text=schedule_file({"a": {"job": JOB, "every": "1s", "args": ["x"], "queue": 5}}))
    @example(text=schedule_file({"a": {"job": ["x"], "every": "1s"}}))
    def sync(text):
        store.reset()
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        outcome = jobctl_here(redis_url, ["schedules", "sync"], [str(path)])
        assert_clean(outcome, store, text)
        if outcome.code == 0:
            assert_synced(store.context, path)
        tally(outcome.code == 0)

    sync()
    tally.report("schedule files")


# --- 3 to 5. the dashboard: JSON API, forms, query strings ---------------------------------------------


@pytest.fixture
def browser(store, redis_url, tmp_path) -> FlaskClient:
    """A test client of a dashboard on the seeded store, on the dashboard's own machine (local mode: an
    operator). Its session gets the CSRF token CSRF from `fresh_session`."""
    app = create_app(make_settings(redis_url, data_dir=tmp_path), testing=True)  # errors raise: a 500 fails
    client = app.test_client()
    client.environ_base.update(LOOPBACK)
    yield client
    app.extensions["jobs.context"].redis.close()


def fresh_session(client: FlaskClient) -> None:
    """Forget the session (a fuzzed /logout may have cleared it) and give it the CSRF token CSRF."""
    with client.session_transaction() as session:
        session.clear()
        session["csrf"] = CSRF


def path_part(values: SearchStrategy[str]) -> SearchStrategy[str]:
    """`values` as one percent-encoded path segment (a `/` in it reaches the router as %2F); else bytes
    that are not UTF-8, and dot segments."""
    odd = st.sampled_from(["%ff", "%c0%af", "%00", "..", "%2e%2e"])
    return mostly(values.map(lambda text: quote(text, safe="")), odd)


def finished_bulk_task(store: Store, task: str) -> None:
    """Wait for the bulk task an accepted request started (it runs in a thread): it must finish, not fail."""

    def ended() -> dict | None:
        progress = bulk.progress(store.context, task)
        return progress if progress["state"] in ("finished", "failed") else None

    progress = wait_for(ended, what=f"bulk task {task}")
    assert progress["state"] == "finished", progress


BULK_BODIES = st.fixed_dictionaries(
    {"action": mostly(st.sampled_from(["requeue", "delete"]), json_values())},
    optional={
        "ids": mostly(st.lists(job_ids(), max_size=3), json_values()),
        "everything": mostly(st.sampled_from([True, "1"]), json_values()),
        "name": mostly(st.just("tests.sample_jobs.fails_without_retry"), job_names() | json_values()),
        "error": mostly(st.just("KeyError"), hostile_text() | json_values()),
        "since": mostly(moments(), json_values()),
        "until": mostly(moments(), json_values()),
        "queue": mostly(st.just("default"), hostile_text() | json_values()),
    },
)
PAUSE_BODIES = st.fixed_dictionaries({}, optional={"until": mostly(moments(), json_values())})


@dataclass(frozen=True)
class Body:
    """A request body as the test client sends it."""

    data: object = None
    content_type: str | None = None


def as_json(value: object) -> Body:
    """`value` as a JSON body (NaN and lone surrogates included, as Python writes them)."""
    return Body(json.dumps(value), "application/json")


def bodies(objects: SearchStrategy[dict]) -> SearchStrategy[Body]:
    """The JSON objects a route takes; else no body, other JSON, malformed JSON, a form, or raw bytes
    under various content types."""
    raw_types = st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"])
    others = st.one_of(
        st.just(Body()),
        json_values().map(as_json),
        st.sampled_from(JSON_TEXTS).map(lambda text: Body(text, "application/json")),
        st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4).map(Body),
        st.builds(Body, st.binary(max_size=40), raw_types | st.just("multipart/form-data")),
    )
    return mostly(objects.map(as_json), others, odds=3)


def action(known: tuple[str, ...]) -> SearchStrategy[str]:
    """An action of a route (`requeue`, `pause`, ...) as a path segment; else hostile text."""
    return path_part(mostly(st.sampled_from(known), hostile_text(undecodable=False)))


JOB_PATHS = st.builds("/job/{}/{}".format, path_part(job_ids(False)), action(actions.JOB_ACTIONS))
SCHEDULE_PATHS = st.builds(
    "/schedules/{}/{}".format, path_part(schedule_ids(False)), action(actions.SCHEDULE_ACTIONS)
)
LOCK_PATHS = st.builds("/locks/{}/release".format, path_part(lock_names(False)))
API_POSTS = st.one_of(
    st.tuples(JOB_PATHS.map("/api{}".format), bodies(st.just({}))),
    st.tuples(st.just("/api/jobs/failed/bulk"), bodies(BULK_BODIES)),
    st.tuples(SCHEDULE_PATHS.map("/api{}".format), bodies(PAUSE_BODIES)),
    st.tuples(LOCK_PATHS.map("/api{}".format), bodies(st.just({}))),
)


def assert_api_answer(response, store: Store, request: object) -> None:
    """Below 500; a refusal is JSON with a message and wrote nothing; an accepted bulk action finishes."""
    assert response.status_code < 500, (request, response.status_code)
    if response.status_code >= 400:
        assert response.is_json, (request, response.status_code, response.text)
        error = response.json.get("error") if isinstance(response.json, dict) else None
        assert isinstance(error, str) and error, (request, response.text)
        store.assert_unchanged(request)
    elif response.status_code == 202:
        finished_bulk_task(store, response.json["task"])


def test_api_requests_never_answer_500_and_refusals_write_nothing(store, browser, tally):
    fresh_session(browser)

    @fuzz(500)
    @given(request=API_POSTS)
    @example(request=("/api/jobs/failed/bulk", Body("[1, 2]", "application/json")))
    @example(request=("/api/jobs/failed/bulk", Body("[" * 5000, "application/json")))
    @example(request=("/api/jobs/failed/bulk", Body('{"action": ["requeue"]}', "application/json")))
    @example(request=("/api/jobs/failed/bulk", Body('{"action": "requeue", "ids": 5}', "application/json")))
    @example(
        request=(
            "/api/jobs/failed/bulk",
            Body('{"action": "requeue", "ids": ["\\udcff"]}', "application/json"),
        )
    )
    @example(
        request=("/api/jobs/failed/bulk", Body('{"action": "delete", "ids": [5, null]}', "application/json"))
    )
    @example(
        request=(
            "/api/jobs/failed/bulk",
            Body('{"action": "requeue", "everything": true, "since": 5}', "application/json"),
        )
    )
    @example(
        request=("/api/schedules/by-hand/pause", Body('{"until": "0001-01-01T00:00:00"}', "application/json"))
    )
    @example(request=("/api/schedules/by-hand/pause", Body('{"until": 5}', "application/json")))
    @example(request=("/api/job/seed-queued/requeue", Body()))
    @example(request=("/api/job/a%2Fb/delete", Body()))
    def api_post(request):
        store.reset()
        path, body = request
        response = browser.post(
            path, data=body.data, content_type=body.content_type, headers={"X-CSRF-Token": CSRF}
        )
        assert_api_answer(response, store, request)
        tally(response.status_code < 400)

    api_post()
    tally.report("API requests")


FORM_VALUES = hostile_text(undecodable=False) | st.lists(hostile_text(undecodable=False), max_size=3)
BULK_FORMS = st.fixed_dictionaries(
    {"action": mostly(st.sampled_from(["requeue", "delete"]), FORM_VALUES)},
    optional={
        "ids": mostly(st.lists(job_ids(False), max_size=3), FORM_VALUES),
        "everything": mostly(st.just("1"), FORM_VALUES),
        "name": mostly(st.just("tests.sample_jobs.fails_without_retry"), FORM_VALUES),
        "error": mostly(st.just("KeyError"), FORM_VALUES),
        "since": moments(False),
        "until": moments(False),
        "queue": mostly(st.just("default"), FORM_VALUES),
    },
)
FORM_POSTS = st.tuples(
    st.one_of(
        st.tuples(JOB_PATHS, st.just({})),
        st.tuples(st.just("/jobs/failed/bulk"), BULK_FORMS),
        st.tuples(SCHEDULE_PATHS, st.fixed_dictionaries({}, optional={"until": moments(False)})),
        st.tuples(LOCK_PATHS, st.just({})),
        st.tuples(
            st.sampled_from(["/login", "/logout"]),
            st.fixed_dictionaries({}, optional={"user": FORM_VALUES, "password": FORM_VALUES}),
        ),
    ),
    mostly(st.just({}), st.dictionaries(st.text(max_size=8), FORM_VALUES, max_size=3)),  # fields of no route
).map(lambda parts: (parts[0][0], parts[1] | parts[0][1]))
CSRF_SENT = mostly(
    st.sampled_from(["field", "header"]), st.sampled_from(["missing", "wrong", "wrong header"]), odds=3
)


def signed(fields: dict, csrf: str) -> tuple[dict, dict]:
    """The form and the headers of a post that sends the CSRF token as `csrf` says: in the form
    ("field"), in the X-CSRF-Token header ("header"), not at all ("missing"), or a wrong one."""
    fields = {key: value for key, value in fields.items() if key != "csrf_token"}
    sent = {"field": CSRF, "wrong": CSRF[:-1]}
    if csrf in sent:
        fields["csrf_token"] = sent[csrf]
    headers = {"header": {"X-CSRF-Token": CSRF}, "wrong header": {"X-CSRF-Token": "x" + CSRF}}
    return fields, headers.get(csrf, {})


def test_form_posts_never_answer_500_and_need_the_sessions_csrf_token(store, browser, tally):
    @fuzz(400)
    @given(form=FORM_POSTS, csrf=CSRF_SENT)
    @example(form=("/schedules/by-hand/pause", {"until": "0001-01-01T00:00:00"}), csrf="field")
    @example(
        form=("/jobs/failed/bulk", {"action": "requeue", "everything": "1", "since": "0001-01-01T00:00:00"}),
        csrf="field",
    )
    @example(form=("/job/seed-queued/requeue", {}), csrf="field")
    @example(form=("/jobs/failed/bulk", {"action": "delete", "everything": "1"}), csrf="wrong")
    def form_post(form, csrf):
        store.reset()
        fresh_session(browser)
        path, fields = form
        fields, headers = signed(fields, csrf)
        response = browser.post(path, data=fields, headers=headers)
        assert response.status_code < 500, (form, csrf)
        if csrf not in ("field", "header"):
            assert response.status_code == 400 and "CSRF" in response.text, (form, csrf)
        if response.status_code >= 400:
            store.assert_unchanged((form, csrf))
        elif path == "/jobs/failed/bulk":
            finished_bulk_task(store, urlsplit(response.headers["Location"]).path.rsplit("/", 1)[-1])
        tally(response.status_code < 400)

    form_post()
    tally.report("form posts")


STATES = mostly(st.sampled_from(inspect.STATES), path_part(hostile_text(undecodable=False)))
PAGES = st.one_of(
    STATES.map("/jobs/{}".format),
    STATES.map("/api/jobs/{}".format),
    st.sampled_from(["/retries", "/api/retries", "/invoices", "/api/invoices", "/audit", "/api/audit"]),
    st.sampled_from(["/", "/api/overview", "/schedules", "/api/schedules", "/locks", "/api/locks"]),
    st.builds("/{}/{}".format, st.sampled_from(["job", "api/job"]), path_part(job_ids(False))),
    st.builds(
        "/{}/{}".format, st.sampled_from(["schedules", "api/schedules"]), path_part(schedule_ids(False))
    ),
    st.builds("/{}/{}".format, st.sampled_from(["bulk", "api/bulk"]), path_part(hostile_text(False))),
)
HOSTILE = hostile_text(undecodable=False)
QUERIES = mostly(
    st.tuples(
        st.fixed_dictionaries(
            {},
            optional={
                "page": numbers(False),
                "name": mostly(st.just("tests.sample_jobs.fails_without_retry"), HOSTILE),
                "error": mostly(st.just("KeyError"), HOSTILE),
                "since": moments(False),
                "until": moments(False),
                "queue": mostly(st.just("default"), HOSTILE),
                "retrying": mostly(st.just("1"), HOSTILE),
                "month": mostly(st.just("2026-11"), HOSTILE),
                "count": numbers(False),
            },
        ),
        mostly(st.just({}), st.dictionaries(st.text(max_size=8), HOSTILE, max_size=3)),  # keys of no page
    ).map(lambda parts: parts[1] | parts[0]),
    st.binary(max_size=40).map(lambda raw: quote_from_bytes(raw, safe="=&")),  # maybe not UTF-8
)


def test_query_strings_of_pages_never_answer_500_nor_write(store, browser, tally):
    @fuzz(400)
    @given(path=PAGES, query=QUERIES)
    @example(path="/api/jobs/failed", query={"since": "0001-01-01T00:00:00"})
    @example(path="/jobs/failed", query={"name": JOB, "until": "0001-01-01T00:00:00"})
    @example(path="/jobs/failed", query={"name": JOB, "until": "0001-01-01T00:00:00+14:00"})
    @example(path="/api/jobs/finished", query={"since": "9999-12-31T23:59:59-12:00", "name": JOB})
    @example(path="/api/audit", query={"count": "-1"})
    @example(path="/api/audit", query={"count": "99999999999999999999999"})
    def query_string(path, query):
        response = browser.get(path, query_string=query)
        assert response.status_code < 500, (path, query)
        if path.startswith("/api/") and response.status_code >= 400:
            assert response.is_json and response.json["error"], (path, query, response.text)
        store.assert_unchanged((path, query))
        tally(response.status_code < 400)

    query_string()
    tally.report("page queries")
