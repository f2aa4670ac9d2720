"""`python manage.py order_requeue`: the operator's requeue without the admin or an API token.

Each order goes through `engine.services.order_requeue`, exactly as the admin action and
`POST /api/orders/<id>/requeue` do: the state machine decides, the history is kept, the attempt
count continues. Orders are named by id, or selected after an incident by status, age and error
code (`--failed-within 30 --error-code rpc_timeout`); `--dry-run` lists what would be requeued.
"""

from __future__ import annotations

import getpass
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from engine.errors import OrderError
from engine.services import order_requeue
from orders.models import Order, OrderStatus

LIMIT = 10_000


class Command(BaseCommand):
    help = "Send failed or expired orders back to pending (history kept) and dispatch them again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("order_ids", nargs="*", help="order ids (UUIDs)")
        parser.add_argument(
            "--failed-within",
            type=float,
            metavar="MINUTES",
            help="every order that failed for good in the last MINUTES",
        )
        parser.add_argument(
            "--expired-within",
            type=float,
            metavar="MINUTES",
            help="every order that expired in the last MINUTES",
        )
        parser.add_argument("--error-code", help="only failures with this code (rpc_timeout, ...)")
        parser.add_argument("--by", default=getpass.getuser(), help="recorded on the event")
        parser.add_argument("--dry-run", action="store_true", help="list, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        ids = self._select(options)
        if not ids:
            self.stdout.write("nothing to requeue")
            return
        requeued = refused = 0
        for order_id in ids:
            if options["dry_run"]:
                self.stdout.write(f"would requeue {order_id}")
                continue
            try:
                order = order_requeue(order_id=order_id, by=options["by"])
            except OrderError as error:
                refused += 1
                self.stderr.write(f"{order_id}: {error.message}")
                continue
            requeued += 1
            self.stdout.write(
                f"requeued {order.pk} ({order.order_type}, attempts {order.attempts})"
            )
        if not options["dry_run"]:
            self.stdout.write(f"{requeued} requeued, {refused} refused")
        if refused and not requeued:
            raise CommandError("no order was requeued")

    def _select(self, options: dict[str, Any]) -> list[str]:
        ids = list(options["order_ids"])
        failed, expired = options["failed_within"], options["expired_within"]
        if not ids and failed is None and expired is None:
            raise CommandError(
                "name orders by id, or select them with --failed-within/--expired-within"
            )
        now = timezone.now()
        if failed is not None:
            query = Order.objects.filter(
                status=OrderStatus.FAILED,
                next_attempt_at__isnull=True,
                updated_at__gte=now - timedelta(minutes=failed),
            )
            if options["error_code"]:
                query = query.filter(error_code=options["error_code"])
            ids += [
                str(i) for i in query.order_by("created_at").values_list("id", flat=True)[:LIMIT]
            ]
        if expired is not None:
            query = Order.objects.filter(
                status=OrderStatus.EXPIRED, updated_at__gte=now - timedelta(minutes=expired)
            )
            ids += [
                str(i) for i in query.order_by("created_at").values_list("id", flat=True)[:LIMIT]
            ]
        return list(dict.fromkeys(ids))  # named twice, requeued once
