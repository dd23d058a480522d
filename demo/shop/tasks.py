"""The demo shop's background work: a realistic mix of fast, slow and failing tasks."""

import random
import time

from background_task import background
from background_task.exceptions import InvalidTaskError


@background(queue="emails")
def send_welcome_email(user_id: int, address: str) -> str:
    time.sleep(random.uniform(0.005, 0.02))  # talking to the mail server
    return f"sent to {address}"


@background(queue="media")
def make_thumbnail(image_id: int, size: int = 128) -> dict:
    time.sleep(random.uniform(0.01, 0.04))
    return {"image": image_id, "size": size}


@background(queue="reports", priority=-5)
def build_sales_report(month: str) -> int:
    time.sleep(random.uniform(0.2, 0.5))
    return random.randint(100, 1000)


@background(max_attempts=3)
def sync_payment(order_id: int) -> str:
    """Fails on its first attempt, as a flaky payment API does; the retry succeeds."""
    from background_task.models import Task

    if Task.objects.filter(task_params__startswith=f"[[{order_id}]", attempts=0).exists():
        raise ConnectionError(f"payment API timed out for order {order_id}")
    return "synced"


@background
def import_order(payload: dict) -> int:
    if "sku" not in payload:
        raise InvalidTaskError(f"order payload without a sku: {payload}")
    return payload["quantity"]


@background
def refresh_exchange_rates() -> None:
    time.sleep(0.01)
