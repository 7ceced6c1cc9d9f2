"""End to end in a real headless browser: Debian's chromium, driven by Playwright, against the dashboard
running as its own process (`jobctl dashboard`, gunicorn) on the test server. An operator goes from the
overview to the failed jobs, opens one and requeues it, pauses a schedule; job data shows as text; and
rq-dashboard at /rq renders, without running script that a job's exception carries."""

from __future__ import annotations

import shutil
import socket
import threading
import urllib.request

import pytest

import jobs
from jobs import inspect, recurring
from tests import sample_jobs
from tests.conftest import jobctl, wait_for

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip(
        "needs Debian's chromium (apt-get install chromium); .ci/run installs it", allow_module_level=True
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs playwright (pip install -e '.[dev]'); .ci/run installs it"
)
expect = sync_api.expect

IMG = "<img src=x onerror=alert(1)>"
WAIT_MS = 10_000  # each wait for an element; a run takes a few seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dashboard(processes, redis_url, tmp_path) -> str:
    """The base URL of a dashboard process (local-only mode: this machine is operator)."""
    port = free_port()
    process = processes.start("dashboard", "--port", str(port), url=redis_url, JOBS_DATA_DIR=str(tmp_path))
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()  # never blocks
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            pytest.fail("the dashboard exited:\n" + "".join(output))
        try:
            with urllib.request.urlopen(f"{base}/api/overview", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_for(answers, timeout=20, what="the dashboard to answer")
    return base


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def test_an_operator_requeues_a_failed_job_and_pauses_a_schedule(
    context, redis_url, dashboard, browser, tmp_path
):
    failed = sample_jobs.always_fails.enqueue("disk full")
    sample_jobs.always_fails.enqueue(IMG)
    assert jobctl("worker", "--burst", "-c", "2", url=redis_url).returncode == 0
    jobs.schedule("browser-report", sample_jobs.record, cron="0 6 * * *", tz="Europe/Berlin", args=["b"])

    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    page.goto(f"{dashboard}/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    failed_card = page.locator("a.card.state-failed")
    expect(failed_card).to_have_text("2 failed")

    failed_card.click()
    expect(page).to_have_url(f"{dashboard}/jobs/failed")
    expect(page.get_by_role("heading", name="Failed jobs")).to_be_visible()
    expect(page.locator("td.error", has_text=IMG)).to_have_text(f"ValueError: {IMG}")  # text, not markup

    page.get_by_role("link", name=failed.id).click()
    expect(page).to_have_url(f"{dashboard}/job/{failed.id}")
    expect(page.locator("p.state")).to_have_text("failed")
    expect(page.locator("td.error")).to_have_text("ValueError: disk full")

    page.get_by_role("button", name="requeue", exact=True).click()
    expect(page.locator("p.flash")).to_have_text("requeue: done")
    expect(page.locator("p.state")).to_have_text("queued")
    assert inspect.job_detail(context, failed.id).state == "queued"

    page.get_by_role("link", name="Schedules", exact=True).click()
    page.get_by_role("link", name="browser-report").click()
    expect(page).to_have_url(f"{dashboard}/schedules/browser-report")
    expect(page.locator("p.state")).to_have_text("active")
    page.get_by_role("button", name="pause", exact=True).click()
    expect(page.locator("p.flash")).to_have_text("pause: done")
    expect(page.locator("p.state")).to_have_text("paused until forever")
    expect(page.get_by_role("button", name="resume", exact=True)).to_be_visible()
    assert recurring.get(context, "browser-report").paused_until == recurring.FOREVER

    screenshot = tmp_path / "schedule-paused.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.exists() and screenshot.stat().st_size > 0
    assert dialogs == []


def test_rq_dashboard_renders_but_never_runs_script_from_a_job(context, redis_url, dashboard, browser):
    poisoned = sample_jobs.always_fails.enqueue(IMG)
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0

    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    page.add_init_script(  # runs before the page's scripts, outside its CSP
        "window.alerts = []; window.alert = message => window.alerts.push(String(message));"
        "window.violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.violations.push([e.effectiveDirective, e.target.tagName || '']));"
    )

    page.goto(f"{dashboard}/rq/")
    expect(page.locator("table")).to_contain_text("default")  # its templates ran
    assert page.evaluate("window.violations") == []  # and its own script is allowed

    page.goto(f"{dashboard}/rq/0/view/job/{poisoned.id}")
    expect(page.locator("pre.exc_info")).to_contain_text("ValueError")  # written there unescaped...
    # the <img onerror> in the exception either runs (an alert) or is blocked (a CSP violation)
    page.wait_for_function("window.alerts.length + window.violations.length > 0")
    assert page.evaluate("window.alerts") == []
    assert page.evaluate("window.violations") == [["script-src-attr", "IMG"]]
