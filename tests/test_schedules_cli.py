"""`jobctl schedules`: add (upsert) with its next fire times, every bad input refused with one line and
nothing written, list/show/next/pause/resume/trigger/remove, and sync from a TOML file."""

import json
from datetime import UTC, datetime

import pytest

from jobs import recurring
from tests.conftest import jobctl

JOB = "tests.sample_jobs.record"


def run(redis_url, *args):
    return jobctl("schedules", *args, url=redis_url)


def test_add_prints_the_next_five_fire_times_in_the_zone_and_in_utc(context, redis_url):
    result = run(
        redis_url, "add", "invoices", JOB, "--cron", "0 0 1 * *", "--tz", "Europe/Berlin", "--args", '["m"]'
    )
    assert result.returncode == 0, result.stderr
    fire_lines = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    assert len(fire_lines) == 5
    assert all("00:00:00+01:00" in line or "00:00:00+02:00" in line for line in fire_lines)
    assert "23:00:00+00:00" in fire_lines[0] or "22:00:00+00:00" in fire_lines[0]
    schedule = recurring.get(context, "invoices")
    assert schedule.timing.cron == "0 0 1 * *" and schedule.timing.tz == "Europe/Berlin"
    assert schedule.args == ["m"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "0 25 * * *"], "not a valid cron expression"),
        (["--cron", "0 0 1 * *", "--tz", "Europe/Atlantis"], "unknown time zone"),
        (["--every", "500ms"], "at least 1s"),
        (["--every", "soon"], "not a duration"),
        (["--every", "0.5s"], "at least 1s"),
        (["--every", "1s", "--args", "[1,"], "--args is not valid JSON"),
        (["--every", "1s", "--kwargs", "[]"], "--kwargs must be a JSON object"),
        (["--every", "1s", "--args", '["a", "b"]'], "too many positional arguments"),
        (["--every", "1s", "--cron", "* * * * *"], "not both"),
        (["--misfire", "sometimes", "--every", "1s"], "Invalid value for '--misfire'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(context, redis_url, args, message):
    result = run(redis_url, "add", "s", JOB, "--args", '["a"]', *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert context.redis.keys("jobs:schedule*") == []


def test_unknown_job_name_lists_the_known_ones(context, redis_url):
    result = run(redis_url, "add", "s", "no.such.job", "--every", "1s")
    assert result.returncode == 2 and "unknown job 'no.such.job'" in result.stderr and JOB in result.stderr
    assert context.redis.keys("jobs:schedule*") == []


def test_list_show_next_pause_resume_trigger_remove(context, redis_url):
    assert run(redis_url, "add", "hourly", JOB, "--every", "1h", "--args", '["h"]').returncode == 0
    listed = json.loads(run(redis_url, "list", "--json").stdout)
    assert [(s["id"], s["every"]) for s in listed] == [("hourly", 3600)]
    assert len(json.loads(run(redis_url, "next", "hourly", "-n", "7", "--json").stdout)) == 7
    until = "2030-01-01T00:00:00+00:00"
    assert run(redis_url, "pause", "hourly", "--until", until).returncode == 0
    assert recurring.get(context, "hourly").paused_until == 1893456000
    assert run(redis_url, "resume", "hourly").returncode == 0
    assert recurring.get(context, "hourly").paused_until is None
    job_id = run(redis_url, "trigger", "hourly").stdout.strip()
    shown = json.loads(run(redis_url, "show", "hourly", "--json").stdout)
    assert shown["runs"][0]["job_id"] == job_id and shown["runs"][0]["state"] == "queued"
    assert len(shown["next_fires"]) == 5
    human = run(redis_url, "show", "hourly").stdout
    assert "hourly" in human
    created = datetime.fromtimestamp(recurring.get(context, "hourly").created, UTC).isoformat(sep=" ")
    assert f"      created: {created}" in human.splitlines()  # a time, in the schedule's zone, not an epoch
    assert run(redis_url, "remove", "hourly").returncode == 0
    missing = run(redis_url, "show", "hourly")
    assert missing.returncode == 2 and "no schedule 'hourly'" in missing.stderr


def test_list_and_sync_leave_a_damaged_schedule_out_and_say_so(context, redis_url, tmp_path):
    for schedule_id in ("broken", "hourly"):
        assert run(redis_url, "add", schedule_id, JOB, "--every", "1h", "--args", '["h"]').returncode == 0
    context.redis.hset(context.keys.schedule("broken"), "args", "{not json")
    listed = run(redis_url, "list", "--json")
    assert listed.returncode == 0 and [s["id"] for s in json.loads(listed.stdout)] == ["hourly"]
    assert "schedule broken is damaged in Redis" in listed.stderr
    (tmp_path / "schedules.toml").write_text(
        f'[schedules.broken]\njob = "{JOB}"\nevery = "1m"\nargs = ["b"]\n'
    )
    assert run(redis_url, "sync", str(tmp_path / "schedules.toml")).returncode == 0
    assert recurring.get(context, "broken").timing.every == 60  # replaced by the file's


def test_pause_until_without_an_offset_is_refused(context, redis_url):
    run(redis_url, "add", "hourly", JOB, "--every", "1h", "--args", '["h"]')
    result = run(redis_url, "pause", "hourly", "--until", "2030-01-01T00:00:00")
    assert result.returncode == 2 and "no UTC offset" in result.stderr


def test_pause_with_an_empty_until_is_refused_not_taken_as_forever(context, redis_url):
    run(redis_url, "add", "hourly", JOB, "--every", "1h", "--args", '["h"]')
    result = run(redis_url, "pause", "hourly", "--until", "")
    assert result.returncode == 2 and "not an ISO 8601 time" in result.stderr
    assert recurring.get(context, "hourly").paused_until is None


def test_next_stops_at_the_end_of_the_calendar(context, redis_url):
    assert run(redis_url, "add", "decade", JOB, "--every", "3650d", "--args", '["d"]').returncode == 0
    result = run(redis_url, "next", "decade", "-n", "1000")
    assert result.returncode == 0, result.stderr
    fire_lines = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    assert 0 < len(fire_lines) < 1000 and fire_lines[-1].strip().startswith("99")
    assert result.stdout.splitlines()[-1] == "(no later fire times: the calendar ends in the year 9999)"
    assert len(json.loads(run(redis_url, "next", "decade", "-n", "1000", "--json").stdout)) == len(fire_lines)


def test_sync_reconciles_the_file(context, redis_url, tmp_path):
    path = tmp_path / "schedules.toml"
    path.write_text(
        f"""
[schedules.invoices]
job = "{JOB}"
cron = "0 0 1 * *"
tz = "Europe/Berlin"
args = ["monthly"]

[schedules.cleanup]
job = "{JOB}"
every = "10m"
args = ["cleanup"]
"""
    )
    first = json.loads(run(redis_url, "sync", str(path), "--json").stdout)
    assert sorted(first["created"]) == ["cleanup", "invoices"]
    path.write_text(f'[schedules.invoices]\njob = "{JOB}"\ncron = "0 1 1 * *"\nargs = ["monthly"]\n')
    second = json.loads(run(redis_url, "sync", str(path), "--json").stdout)
    assert second == {"created": [], "updated": ["invoices"], "removed": ["cleanup"]}
    assert recurring.get(context, "invoices").timing.cron == "0 1 1 * *"


def test_sync_refuses_a_bad_file_before_writing_anything(context, redis_url, tmp_path):
    path = tmp_path / "schedules.toml"
    path.write_text(
        f'[schedules.good]\njob = "{JOB}"\nevery = "1m"\nargs = ["g"]\n\n[schedules.bad]\njob = "{JOB}"\ncron = "nope"\n'
    )
    result = run(redis_url, "sync", str(path))
    assert result.returncode == 2 and "not a valid cron expression" in result.stderr
    assert context.redis.keys("jobs:schedule*") == []
    path.write_text("this is = = not toml")
    result = run(redis_url, "sync", str(path))
    assert result.returncode == 2 and "not valid TOML" in result.stderr


def test_sync_refuses_a_misspelled_table_rather_than_remove_every_schedule(context, redis_url, tmp_path):
    path = tmp_path / "schedules.toml"
    path.write_text(f'[schedules.kept]\njob = "{JOB}"\nevery = "1m"\nargs = ["k"]\n')
    assert run(redis_url, "sync", str(path)).returncode == 0
    path.write_text(f'[schedule.kept]\njob = "{JOB}"\nevery = "1m"\nargs = ["k"]\n')  # "schedule"
    result = run(redis_url, "sync", str(path))
    assert result.returncode == 2 and 'unknown tables or keys ["schedule"]' in result.stderr
    assert recurring.get(context, "kept").args == ["k"]
