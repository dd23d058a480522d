"""The dashboard in a real headless Chromium: log in, open it, look, take a screenshot.

Needs Debian's chromium and chromium-driver; the test installs them when it
can (as root, with apt-get). Where they cannot be installed it is skipped
with the reason, except under CI, where it must run. It runs once, in the
main pass (SQLite, Django 5.2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from background_task import status
from background_task.models import CompletedTask, QueueSample
from background_task.store import metrics
from tests.conftest import MAIN_PASS

pytestmark = pytest.mark.skipif(not MAIN_PASS, reason="runs once, in the main pass")

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def install_chromium() -> str | None:
    """Install Chromium and its driver if missing; return why not, or None."""
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "chromium and chromium-driver are not installed (apt-get install them as root)"
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            return f"could not install Chromium: {' '.join(command)}: {result.stderr[-500:]}"
    return None


@pytest.fixture(scope="module")
def browser():
    problem = install_chromium()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        problem = problem or "selenium is not installed (requirements/test.txt installs it)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,2000")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_dashboard_in_chromium(live_server, browser, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    User.objects.create_superuser("admin", "a@example.com", "secret-pw")
    now = timezone.now()
    for i in range(30):
        at = now - timedelta(minutes=i)
        CompletedTask.objects.create(
            task_name="shop.tasks.send_receipt" if i % 3 else "shop.tasks.rebuild_index",
            task_params="[[], {}]",
            task_hash="h",
            run_at=at,
            started_at=at - timedelta(seconds=0.1 + i / 10),
            finished_at=at,
            status=status.ERROR if i % 7 == 0 else status.DONE,
            attempts=25 if i % 7 == 0 else 1,
            failed_at=at if i % 7 == 0 else None,
            last_error="Traceback (most recent call last):\nValueError: no such order" if i % 7 == 0 else "",
        )  # fmt: skip
    for i in range(120):
        mail = {"due": max(0, 60 - i) + (i * 13) % 9, "waiting": 80 + (i * 5) % 30}
        mail.update(running=3, finished=30 + (i * 7) % 25, failed=int(i % 11 == 0))
        reports = {"due": 0, "waiting": 12, "running": 1, "finished": 10, "failed": 0}
        QueueSample.objects.create(
            minute=metrics.minute_of(now) - timedelta(minutes=119 - i),
            **{key: mail[key] + reports[key] for key in mail},
            queues={"mail": mail, "reports": reports},
        )

    browser.get(live_server.url + reverse("admin:login"))
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("secret-pw")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait = WebDriverWait(browser, 30)
    wait.until(lambda page: "/login/" not in page.current_url)  # logged in
    browser.get(live_server.url + reverse("admin:background_task_task_changelist"))
    wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, ".object-tools a"))
    browser.find_element(By.CSS_SELECTOR, ".object-tools a[href$='/dashboard/']").click()
    wait.until(lambda page: "dashboard" in page.title)

    assert "Background tasks dashboard" in browser.title
    figures = browser.find_element(By.ID, "bgtask-figures").text
    assert "due" in figures and "live workers" in figures
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.bgtask-chart")
    assert len(charts) == 2
    # The lines were laid out with a real width by the browser.
    widths = browser.execute_script(
        "return [...document.querySelectorAll('svg.bgtask-chart polyline')]"
        ".map(line => line.getBBox().width)"
    )
    assert widths and max(widths) > 300
    assert "reports" in browser.find_element(By.ID, "bgtask-queues").text
    stats = browser.find_element(By.ID, "bgtask-task-stats").text
    assert "shop.tasks.send_receipt" in stats and "shop.tasks.rebuild_index" in stats
    failure = browser.find_element(By.CSS_SELECTOR, "#bgtask-failures details")
    failure.find_element(By.TAG_NAME, "summary").click()
    assert "ValueError: no such order" in failure.text

    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    keep = os.environ.get("BGTASK_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, os.path.join(keep, "dashboard.png"))
