"""`python manage.py order_cancel ID...`: the operator's cancel without the admin, through
`engine.services.order_cancel` (only a pending order, the row lock deciding any race)."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from engine.errors import OrderError
from engine.services import order_cancel


class Command(BaseCommand):
    help = "Cancel orders that have not started routing (pending, incl. waiting limit/sniper)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("order_ids", nargs="+", help="order ids (UUIDs)")
        parser.add_argument("--by", default=getpass.getuser(), help="recorded in the reason")

    def handle(self, *args: Any, **options: Any) -> None:
        refused = 0
        for order_id in options["order_ids"]:
            try:
                order_cancel(order_id=order_id, reason=f"cancelled by operator {options['by']}")
            except OrderError as error:
                refused += 1
                self.stderr.write(f"{order_id}: {error.message}")
                continue
            self.stdout.write(f"cancelled {order_id}")
        if refused == len(options["order_ids"]):
            raise CommandError("no order was cancelled")
