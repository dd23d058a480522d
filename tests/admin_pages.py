"""The admin and status pages a subprocess scenario visits as a superuser."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client

PAGES = (
    "/admin/background_task/task/",
    "/admin/background_task/completedtask/",
    "/admin/background_task/task/dashboard/",
    "/tasks/",
)


def superuser_client(username: str) -> Client:
    """A test client logged in as a new superuser."""
    User.objects.create_superuser(username, f"{username}@example.com", "pw")
    client = Client()
    assert client.login(username=username, password="pw")
    return client


def visit(client: Client) -> None:
    """Every page answers 200."""
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
