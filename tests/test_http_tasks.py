"""HTTP requests sent by workers, against a real server on 127.0.0.1."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from background_task.contrib import http
from tests.conftest import drain

pytestmark = pytest.mark.django_db(transaction=True)


class Handler(BaseHTTPRequestHandler):
    seen: list[dict] = []
    failures_left = 0

    def log_message(self, *args):  # keep the test output clean
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        Handler.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "body": body,
                "type": self.headers.get("Content-Type"),
                "token": self.headers.get("X-Token"),
            }
        )
        if self.path == "/missing":
            code, text = 404, "no such thing"
        elif self.path == "/flaky" and Handler.failures_left > 0:
            Handler.failures_left -= 1
            code, text = 503, "try later"
        else:
            code, text = 200, "ok " + "x" * 10000
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(text.encode())

    do_GET = do_POST = _answer


@pytest.fixture
def server():
    Handler.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_post_is_sent_by_the_worker_and_its_answer_kept(server, clock):
    task = http.post(f"{server}/hook", json={"order": 7}, headers={"X-Token": "s3cret"}, schedule=0)
    assert Handler.seen == []  # nothing is sent at call time
    drain(clock)
    [request] = Handler.seen
    assert request == {
        "method": "POST",
        "path": "/hook",
        "body": '{"order": 7}',
        "type": "application/json",
        "token": "s3cret",
    }
    task.refresh()
    assert task.status == "done" and task.result["status"] == 200
    assert len(task.result["body"]) == http.MAX_BODY  # bounded


def test_a_form_body_and_a_get(server, clock):
    http.post(f"{server}/form", data={"a": "1", "b": "x y"}, schedule=0)
    http.get(f"{server}/page?q=1", schedule=0)
    drain(clock)
    form, page = sorted(Handler.seen, key=lambda r: r["method"], reverse=True)
    assert form["body"] == "a=1&b=x+y" and form["type"] == "application/x-www-form-urlencoded"
    assert page["method"] == "GET" and page["path"] == "/page?q=1"


def test_5xx_is_retried_with_backoff_and_4xx_fails_for_good(server, clock):
    Handler.failures_left = 1
    flaky = http.post(f"{server}/flaky", json={}, schedule=0)
    missing = http.post(f"{server}/missing", json={}, schedule=0)
    drain(clock)
    flaky.refresh()
    missing.refresh()
    assert flaky.status == "waiting" and flaky.attempts == 1 and "503" in flaky.error["message"]
    assert missing.status == "error" and missing.attempts == 1
    assert missing.error["exception_class_path"] == "background_task.contrib.http.HTTPClientError"
    clock.advance(60)
    drain(clock)
    assert flaky.refresh().status == "done" and flaky.result["status"] == 200


def test_a_connection_error_is_retried(clock):
    task = http.post("http://127.0.0.1:9/closed", json={}, timeout=2, schedule=0)
    drain(clock)
    task.refresh()
    assert task.status == "waiting" and "ConnectionError" in task.error["exception_class_path"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: http.post("ftp://example.com/x"), "http or https"),
        (lambda: http.send("BREW", "http://example.com"), "method must be one of"),
        (lambda: http.post("http://example.com", json={}, data="x"), "json or data"),
        (lambda: http.post("http://example.com", timeout=0), "timeout must be"),
    ],
)
def test_bad_requests_are_refused_at_call_time(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
