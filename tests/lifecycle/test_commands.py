"""The operator's `python manage.py order_requeue` / `order_cancel`: the same services as the
API and the admin, selected by id or, after an incident, by status, age and error code."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from dex.types import TransientChainError
from engine import pipeline
from engine.watcher import orders_expire
from orders.models import Order, OrderStatus
from tests.lifecycle.conftest import run_to_end, statuses

pytestmark = pytest.mark.django_db


def run(command: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def failed(submit, monkeypatch, code: str = "rpc_timeout") -> Order:  # type: ignore[no-untyped-def]
    def down(tx):  # type: ignore[no-untyped-def]
        raise TransientChainError("the node did not answer", code=code)

    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "transaction_send", down)
        order = run_to_end(submit())
    assert order.status == OrderStatus.FAILED
    return order


def test_requeue_by_id_then_the_order_succeeds(submit, monkeypatch) -> None:
    order = failed(submit, monkeypatch)
    out, _ = run("order_requeue", str(order.pk), "--by", "night-shift")
    assert f"requeued {order.pk}" in out and "1 requeued, 0 refused" in out
    assert order.events.order_by("-seq").first().payload["requeuedBy"] == "night-shift"
    done = run_to_end(order)
    assert done.status == OrderStatus.CONFIRMED and done.attempts == 4


def test_requeue_after_an_incident_selects_by_age_and_error_code(submit, monkeypatch) -> None:
    timeouts = [failed(submit, monkeypatch) for _ in range(2)]
    other = failed(submit, monkeypatch, code="node_rate_limited")
    out, _ = run(
        "order_requeue", "--failed-within", "10", "--error-code", "rpc_timeout", "--dry-run"
    )
    assert out.count("would requeue") == 2
    assert Order.objects.filter(status=OrderStatus.FAILED).count() == 3  # a dry run changes nothing
    run("order_requeue", "--failed-within", "10", "--error-code", "rpc_timeout")
    for order in timeouts:
        order.refresh_from_db()
        assert order.status == OrderStatus.PENDING
    other.refresh_from_db()
    assert other.status == OrderStatus.FAILED


def test_requeue_selects_expired_orders(submit) -> None:
    order = submit(order_type="limit", limit_price=Decimal("100000"))
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now())
    orders_expire()
    run("order_requeue", "--expired-within", "5")
    assert statuses(order) == ["pending", "expired", "pending"]


def test_requeue_refuses_what_the_state_machine_refuses(submit) -> None:
    done = run_to_end(submit())
    with pytest.raises(CommandError):
        run("order_requeue", str(done.pk), "not-a-uuid")
    assert Order.objects.get(pk=done.pk).status == OrderStatus.CONFIRMED
    with pytest.raises(CommandError):
        run("order_requeue")  # nothing named, nothing selected


def test_cancel_by_id(submit) -> None:
    waiting, done = submit(), run_to_end(submit())
    out, err = run("order_cancel", str(waiting.pk), str(done.pk), "--by", "ops")
    assert f"cancelled {waiting.pk}" in out and "only a pending order" in err
    assert waiting.events.order_by("-seq").first().payload["reason"] == "cancelled by operator ops"
    with pytest.raises(CommandError):
        run("order_cancel", str(done.pk))
