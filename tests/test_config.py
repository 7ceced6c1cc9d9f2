"""Configuration: Settings read from JOBS_* variables (defaults, parsing, durations, one-line errors naming
the variable, validation) and the human duration format ("30s", "5m", "1h", "7d")."""

from pathlib import Path

import pytest

from jobs.config import DEFAULT_QUEUES, Settings
from jobs.durations import format_duration, parse_duration
from jobs.errors import ConfigError, JobsError
from tests.conftest import jobctl

EVERY_VARIABLE = {
    "JOBS_REDIS_URL": "redis://cache.internal:6380/1",
    "JOBS_PREFIX": "tbf:",
    "JOBS_IMPORTS": "billing.tasks, mail.tasks,,",
    "JOBS_QUEUES": " high ,default ",
    "JOBS_CONCURRENCY": "8",
    "JOBS_THREADS": "4",
    "JOBS_SHUTDOWN_TIMEOUT": "90s",
    "JOBS_ORPHAN_TIMEOUT": "5m",
    "JOBS_MAX_ORPHANS": "5",
    "JOBS_SUCCEEDED_TTL": "12h",
    "JOBS_FAILED_TTL": "2d",
    "JOBS_DATA_DIR": "/var/lib/jobs",
    "JOBS_DASHBOARD_HOST": "0.0.0.0",
    "JOBS_DASHBOARD_PORT": "8080",
    "JOBS_STRICT": "1",
    "JOBS_LOG_LEVEL": "debug",
}


# --- Settings.from_env -------------------------------------------------------------------------------


def test_an_empty_environment_gives_the_documented_defaults():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.redis_url is None
    assert settings.prefix == "jobs:"
    assert settings.imports == ()
    assert settings.queues == DEFAULT_QUEUES == ("critical", "default", "low")
    assert settings.concurrency == 2
    assert settings.threads == 1
    assert settings.shutdown_timeout == 25.0
    assert settings.orphan_timeout == 60.0
    assert settings.max_orphans == 3
    assert settings.succeeded_ttl == 86400
    assert settings.failed_ttl == 7 * 86400
    assert settings.data_dir == Path(".jobs")
    assert (settings.dashboard_host, settings.dashboard_port) == ("127.0.0.1", 9181)
    assert settings.strict is False
    assert settings.log_level == "INFO"


def test_every_variable_is_read_and_converted():
    settings = Settings.from_env(EVERY_VARIABLE)
    assert settings == Settings(
        redis_url="redis://cache.internal:6380/1",
        prefix="tbf:",
        imports=("billing.tasks", "mail.tasks"),
        queues=("high", "default"),
        concurrency=8,
        threads=4,
        shutdown_timeout=90.0,
        orphan_timeout=300.0,
        max_orphans=5,
        succeeded_ttl=43200,
        failed_ttl=172800,
        data_dir=Path("/var/lib/jobs"),
        dashboard_host="0.0.0.0",
        dashboard_port=8080,
        strict=True,
        log_level="DEBUG",
    )
    assert isinstance(settings.succeeded_ttl, int) and isinstance(settings.failed_ttl, int)


def test_os_environ_is_the_default_source(monkeypatch):
    for variable in EVERY_VARIABLE:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("JOBS_CONCURRENCY", "5")
    monkeypatch.setenv("JOBS_QUEUES", "only")
    settings = Settings.from_env()
    assert (settings.concurrency, settings.queues) == (5, ("only",))


def test_empty_values_count_as_unset():
    assert Settings.from_env(dict.fromkeys(EVERY_VARIABLE, "")) == Settings()


@pytest.mark.parametrize(
    ("variable", "raw", "field", "expected"),
    [
        ("JOBS_SHUTDOWN_TIMEOUT", "30", "shutdown_timeout", 30.0),
        ("JOBS_SHUTDOWN_TIMEOUT", "1.5m", "shutdown_timeout", 90.0),
        ("JOBS_SHUTDOWN_TIMEOUT", "500ms", "shutdown_timeout", 0.5),
        ("JOBS_ORPHAN_TIMEOUT", "2h", "orphan_timeout", 7200.0),
        ("JOBS_SUCCEEDED_TTL", "7d", "succeeded_ttl", 604800),
        ("JOBS_SUCCEEDED_TTL", "90", "succeeded_ttl", 90),
        ("JOBS_FAILED_TTL", "45m", "failed_ttl", 2700),
        ("JOBS_FAILED_TTL", "1.5s", "failed_ttl", 1),  # TTLs are whole seconds
    ],
)
def test_durations_are_accepted_in_every_duration_variable(variable, raw, field, expected):
    assert getattr(Settings.from_env({variable: raw}), field) == expected


@pytest.mark.parametrize(
    ("raw", "strict"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("On", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
    ],
)
def test_strict_flag_values(raw, strict):
    assert Settings.from_env({"JOBS_STRICT": raw}).strict is strict


def test_overrides_win_over_the_environment_and_none_overrides_are_ignored():
    env = {"JOBS_REDIS_URL": "redis://env:6379/1", "JOBS_CONCURRENCY": "4"}
    settings = Settings.from_env(env, redis_url="redis://flag:6379/1", concurrency=None)
    assert settings.redis_url == "redis://flag:6379/1"
    assert settings.concurrency == 4


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("JOBS_CONCURRENCY", "abc"),
        ("JOBS_CONCURRENCY", "2.5"),
        ("JOBS_MAX_ORPHANS", "many"),
        ("JOBS_DASHBOARD_PORT", "http"),
        ("JOBS_SHUTDOWN_TIMEOUT", "soon"),
        ("JOBS_SHUTDOWN_TIMEOUT", "-5s"),
        ("JOBS_ORPHAN_TIMEOUT", "1 minute"),
        ("JOBS_SUCCEEDED_TTL", "1w"),
        ("JOBS_FAILED_TTL", "forever"),
    ],
)
def test_an_unparsable_value_is_a_config_error_naming_the_variable_and_the_value(variable, raw):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: raw})
    message = str(caught.value)
    assert message.startswith(f"{variable}={raw!r} is not valid: ")
    assert "\n" not in message
    assert isinstance(caught.value, JobsError)  # so the CLI prints it as one `error:` line


def test_an_unknown_log_level_is_a_config_error_naming_the_variable():
    # Every other variable is checked here; a log level that `logging` does not know must be too, or
    # the CLI dies with a ValueError traceback from logging.basicConfig (see test_cli).
    with pytest.raises(ConfigError, match="JOBS_LOG_LEVEL"):
        Settings.from_env({"JOBS_LOG_LEVEL": "verbose"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOBS_CONCURRENCY": "0"}, "JOBS_CONCURRENCY / --concurrency must be at least 1"),
        ({"JOBS_THREADS": "0"}, "JOBS_THREADS / --threads must be between 1 and 64"),
        ({"JOBS_THREADS": "65"}, "JOBS_THREADS / --threads must be between 1 and 64"),
        ({"JOBS_QUEUES": " , ,"}, "JOBS_QUEUES / --queues must name at least one queue"),
        ({"JOBS_ORPHAN_TIMEOUT": "500ms"}, "JOBS_ORPHAN_TIMEOUT must be at least 1 second"),
        ({"JOBS_MAX_ORPHANS": "0"}, "JOBS_MAX_ORPHANS must be at least 1"),
        ({"JOBS_FAILED_TTL": "0"}, "JOBS_FAILED_TTL must be at least 1 second"),
        ({"JOBS_FAILED_TTL": "500ms"}, "JOBS_FAILED_TTL must be at least 1 second"),
        (
            {"JOBS_SUCCEDED_TTL": "1h"},
            "JOBS_SUCCEDED_TTL is not a setting: did you mean JOBS_SUCCEEDED_TTL\\?",
        ),
        ({"JOBS_QUEUE": "a,b"}, "JOBS_QUEUE is not a setting: did you mean JOBS_QUEUES\\?"),
        ({"JOBS_DASHBOARD_PORT": "70000"}, "JOBS_DASHBOARD_PORT / --port must be between 0 and 65535"),
        ({"JOBS_DASHBOARD_PORT": "-1"}, "JOBS_DASHBOARD_PORT / --port must be between 0 and 65535"),
    ],
)
def test_from_env_validates_the_values(env, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"concurrency": 0}, "JOBS_CONCURRENCY / --concurrency must be at least 1"),
        ({"concurrency": -3}, "JOBS_CONCURRENCY / --concurrency must be at least 1"),
        ({"queues": ()}, "JOBS_QUEUES / --queues must name at least one queue"),
        ({"orphan_timeout": 0.9}, "JOBS_ORPHAN_TIMEOUT must be at least 1 second"),
        ({"max_orphans": 0}, "JOBS_MAX_ORPHANS must be at least 1"),
        ({"dashboard_port": 65536}, "JOBS_DASHBOARD_PORT / --port must be between 0 and 65535"),
    ],
)
def test_validate_refuses_unworkable_settings(changes, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        Settings(**changes).validate()


def test_validate_accepts_the_defaults_and_the_smallest_workable_values():
    Settings().validate()
    Settings(concurrency=1, queues=("q",), orphan_timeout=1, max_orphans=1, failed_ttl=1).validate()


def test_other_jobs_variables_not_spelt_as_a_setting_are_left_alone():
    env = {"JOBS_TEST_REDIS_URL": "redis://127.0.0.1:1/15", "JOBS_CHAOS_SECONDS": "5", "JOBS_KEY": "x"}
    assert Settings.from_env(env) == Settings.from_env({})


def test_a_misspelt_variable_is_a_one_line_error(redis_url):
    result = jobctl("stats", url=redis_url, JOBS_FAILD_TTL="1h")
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "error: JOBS_FAILD_TTL is not a setting: did you mean JOBS_FAILED_TTL?"
    ], result.stderr


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_dashboard_port_out_of_range_is_a_one_line_error(redis_url, how):
    """Not a traceback from the web server once it tries to bind the port."""
    if how == "option":
        result = jobctl("dashboard", "--port", "70000", url=redis_url, timeout=30)
    else:
        result = jobctl("dashboard", url=redis_url, timeout=30, JOBS_DASHBOARD_PORT="70000")
    assert "Traceback" not in result.stderr and result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--port" in lines[0], result.stderr


def test_with_applies_changes_and_ignores_none():
    base = Settings(concurrency=3)
    changed = base.with_(concurrency=None, queues=("a", "b"), prefix="x:")
    assert (changed.concurrency, changed.queues, changed.prefix) == (3, ("a", "b"), "x:")
    assert base.queues == DEFAULT_QUEUES  # frozen: the original is unchanged


# --- durations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        ("250ms", 0.25),
        ("90", 90.0),
        ("0", 0.0),
        ("1.5h", 5400.0),
        ("0.5s", 0.5),
        (" 5 m ", 300.0),
        (0, 0.0),
        (45, 45.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(value, seconds):
    result = parse_duration(value)
    assert result == seconds and isinstance(result, float)


@pytest.mark.parametrize(
    "value", ["", "  ", "soon", "5x", "m", "-1", "-5m", "5 minutes", "1h30m", "1e3", -1, -0.5, True]
)
def test_parse_duration_refuses_what_is_not_a_duration(value):
    with pytest.raises(ConfigError):
        parse_duration(value)


def test_parse_duration_error_names_the_value_and_shows_examples():
    with pytest.raises(ConfigError, match=r"^not a duration: 'soon' \(use e\.g\. 30s, 5m, 1h, 2d\)$"):
        parse_duration("soon")
    with pytest.raises(ConfigError, match="must not be negative: -2"):
        parse_duration(-2)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 ms"),
        (0.35, "350 ms"),
        (1, "1s"),
        (42, "42s"),
        (42.4, "42s"),
        (59.6, "1m"),
        (60, "1m"),
        (3900, "1h 5m"),
        (3605, "1h 5s"),
        (86400, "1d"),
        (90061, "1d 1h"),  # at most two parts
        (7 * 86400, "7d"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["30s", "5m", "1h", "7d", "1d 1h", "1h 5m"])
def test_formatted_parts_parse_back(text):
    assert format_duration(sum(parse_duration(part) for part in text.split())) == text
