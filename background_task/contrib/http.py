"""HTTP requests sent by a worker: ``background_task.contrib.http.post(url, json=...)``.

The request runs as an ordinary task (``background_task.contrib.http.request``),
so it is retried with the usual backoff on connection errors, timeouts and
5xx answers, and fails for good on a 4xx answer (repeating it would not
help). Its result is the status code and the start of the body. Only the
standard library is used.
"""

from __future__ import annotations

import json as jsonlib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from background_task.api.registry import tasks
from background_task.core.exceptions import InvalidTaskError

MAX_BODY = 4000  # characters of the response body kept in the result
DEFAULT_TTL = 7 * 24 * 3600  # seconds the result is kept unless ttl= says otherwise
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


class HTTPStatusError(Exception):
    """A 5xx answer: the attempt fails and is retried with backoff."""


class HTTPClientError(InvalidTaskError):
    """A 4xx answer: the request is wrong and fails for good."""


@tasks.background(name="background_task.contrib.http.request", ttl=DEFAULT_TTL)
def request(
    method: str,
    url: str,
    body: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10,
) -> dict[str, Any]:
    """Send one request; return ``{"status": code, "body": "..."}``."""
    data = body.encode() if body is not None else None
    call = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:
            code, text = response.status, response.read(MAX_BODY * 4)
    except urllib.error.HTTPError as error:
        code, text = error.code, error.read(MAX_BODY * 4)
    except (TimeoutError, urllib.error.URLError, ConnectionError) as error:
        raise ConnectionError(f"{method} {url} failed: {error}") from error
    answer = text.decode("utf-8", errors="replace")[:MAX_BODY]
    if 400 <= code < 500:
        raise HTTPClientError(f"{method} {url} answered {code}: {answer[:200]}")
    if code >= 500:
        raise HTTPStatusError(f"{method} {url} answered {code}: {answer[:200]}")
    return {"status": code, "body": answer}


def send(
    method: str,
    url: str,
    *,
    json: Any = None,
    data: Mapping[str, Any] | str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10,
    **schedule_options: Any,
) -> Any:
    """Queue an HTTP request; return its task (a handle: ``wait()``, ``result``...).

    ``json`` is sent as a JSON body, ``data`` as a form (a dict) or as it is.
    ``schedule_options`` are the call keywords of any task (``schedule``,
    ``queue``, ``priority``, ``ttl``...).
    """
    method = method.upper()
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}.")
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"url must be an http or https address, not {url!r}.")
    if json is not None and data is not None:
        raise TypeError("Give json or data, not both.")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
        raise ValueError(f"timeout must be a number of seconds in (0, 3600], not {timeout!r}.")
    sent_headers = {str(key): str(value) for key, value in (headers or {}).items()}
    body: str | None = None
    if json is not None:
        body = jsonlib.dumps(json)
        sent_headers.setdefault("Content-Type", "application/json")
    elif isinstance(data, Mapping):
        body = urllib.parse.urlencode(data)
        sent_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif isinstance(data, bytes):
        body = data.decode("utf-8")
    elif data is not None:
        body = str(data)
    return request(method, url, body, sent_headers, timeout, **schedule_options)


def post(
    url: str,
    json: Any = None,
    data: Any = None,
    headers: Any = None,
    timeout: float = 10,
    **schedule_options: Any,
) -> Any:
    """Queue a POST request (the taskqueue seed's web request task)."""
    return send(
        "POST", url, json=json, data=data, headers=headers, timeout=timeout, **schedule_options
    )


def get(url: str, headers: Any = None, timeout: float = 10, **schedule_options: Any) -> Any:
    """Queue a GET request."""
    return send("GET", url, headers=headers, timeout=timeout, **schedule_options)
