"""Orders and their event history. PostgreSQL is the source of truth: every status an order ever
had is one `OrderEvent` row, written in the same transaction as the order's new state."""

from __future__ import annotations

import uuid

from django.db import models


class OrderStatus(models.TextChoices):
    PENDING = "pending"
    ROUTING = "routing"
    BUILDING = "building"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class OrderType(models.TextChoices):
    MARKET = "market"
    LIMIT = "limit"
    SNIPER = "sniper"


AMOUNT = {"max_digits": 40, "decimal_places": 18}


class Order(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING
    )
    order_type = models.CharField(max_length=8, choices=OrderType.choices, default=OrderType.MARKET)
    wallet_address = models.CharField(max_length=44)
    token_in = models.CharField(max_length=16, help_text="symbol in the token registry")
    token_out = models.CharField(max_length=16, help_text="symbol in the token registry")
    amount_in = models.DecimalField(**AMOUNT)
    slippage_bps = models.PositiveIntegerField(default=100)
    limit_price = models.DecimalField(**AMOUNT, null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(
        default=3, help_text="attempts allowed so far (a requeue grants a fresh budget)"
    )
    triggered_at = models.DateTimeField(
        null=True, blank=True, help_text="when a limit or sniper order's condition was met"
    )
    next_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="when the next attempt may start: a reserved rate-limit slot or a retry",
    )
    selected_dex = models.CharField(max_length=16, blank=True, default="")
    quote = models.JSONField(null=True, blank=True, help_text="the chosen route, exact")
    transaction = models.JSONField(null=True, blank=True, help_text="the signed transaction")
    tx_hash = models.CharField(max_length=90, blank=True, default="")
    executed_price = models.DecimalField(**AMOUNT, null=True, blank=True)
    amount_out = models.DecimalField(**AMOUNT, null=True, blank=True)
    error = models.TextField(blank=True, default="")
    error_code = models.CharField(max_length=40, blank=True, default="")

    # NULL, not "", when absent: the unique constraint below applies only to real keys.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")

    last_seq = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["wallet_address", "created_at"]),
            models.Index(fields=["tx_hash"]),
            models.Index(
                fields=["order_type", "created_at"],
                name="order_waiting_idx",
                condition=models.Q(status="pending"),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["wallet_address", "idempotency_key"],
                name="order_idempotency_key_unique",
                condition=models.Q(idempotency_key__isnull=False),
            ),
            models.CheckConstraint(
                condition=models.Q(amount_in__gt=0), name="order_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        amount = format(self.amount_in.normalize(), "f")
        return f"{self.order_type} {amount} {self.token_in}→{self.token_out} [{self.status}]"

    @property
    def slippage_percent(self):
        from decimal import Decimal

        return Decimal(self.slippage_bps) / 100


class OrderEvent(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=OrderStatus.choices)
    attempt = models.PositiveSmallIntegerField(default=0)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["order", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["order", "seq"], name="order_event_seq_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} #{self.seq} {self.status}"
