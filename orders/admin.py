"""The operator's room in the Django admin: orders and their event history.

Orders are read-only here. The only writes an operator makes are the same two the API offers,
requeue and cancel, and they go through the engine's services (`order_requeue`, `order_cancel`),
so the state machine, the event log and the dispatch behave exactly as for an API call. Every
action says what it did and what it skipped, and why.

The changelist stays fast with many orders: no foreign keys to follow, no full-table count
(`show_full_result_count = False`), fixed filter choices (no DISTINCT scans), and search that
turns a UUID, an id prefix, a wallet or a signature into an indexed lookup.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from engine.errors import OrderError
from engine.formatting import iso
from engine.services import order_cancel, order_requeue
from orders.models import Order, OrderEvent, OrderStatus

#: How many order ids one message lists before it says "and N more".
MESSAGE_ID_LIMIT = 12
_HEX_PREFIX = re.compile(r"^[0-9a-f-]{4,36}$")
_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{6,90}$")


def short_id(value: Any, size: int = 8) -> str:
    return str(value)[:size]


def short_signature(signature: str) -> str:
    return f"{signature[:6]}…{signature[-6:]}" if len(signature) > 16 else signature


def age_text(delta: timedelta) -> str:
    """A compact age a person reads at a glance: 42s, 7m, 3h 05m, 2d 4h."""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def pretty_json(value: Any, *, summary: str = "") -> str:
    """JSON indented for a person, folded under a one-line summary when there is one."""
    if value in (None, {}, []):
        return "—"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    pre = format_html('<pre class="oe-json">{}</pre>', text)
    if not summary:
        return pre
    return format_html("<details><summary>{}</summary>{}</details>", summary, pre)


def event_summary(status: str, payload: dict[str, Any]) -> str:
    """One line that says what an event's payload holds, so the JSON can stay folded."""
    quote = payload.get("quote") or {}
    if status == OrderStatus.ROUTING:
        quotes = payload.get("quotes") or []
        return (
            f"best {payload.get('selectedDex') or quote.get('dex', '?')}: "
            f"{quote.get('amountOut', '?')} out of {len(quotes)} quote(s)"
        )
    if status == OrderStatus.BUILDING:
        tx = payload.get("transaction") or {}
        return (
            f"{len(tx.get('instructions') or [])} instructions, "
            f"CU limit {tx.get('computeUnitLimit', '?')}, "
            f"priority fee {tx.get('priorityFee', '?')} µlamports/CU"
        )
    if status == OrderStatus.SUBMITTED:
        return f"signature {short_signature(payload.get('txHash') or '')}"
    if status == OrderStatus.CONFIRMED:
        return f"{payload.get('amountOut', '?')} out at {payload.get('executedPrice', '?')}"
    if status == OrderStatus.FAILED:
        retry = "another attempt follows" if payload.get("willRetry") else "final"
        return f"{payload.get('errorCode', 'error')}: {payload.get('error', '')} ({retry})"
    if payload.get("requeuedBy"):
        return f"requeued by {payload['requeuedBy']}"
    if payload.get("reason"):
        return str(payload["reason"])
    return ", ".join(sorted(payload)) or ""


# --- filters -------------------------------------------------------------------------------------


class VenueFilter(admin.SimpleListFilter):
    """Fixed choices: the venues never change at run time, and a DISTINCT over every order would
    cost a scan on each page load."""

    title = "venue"
    parameter_name = "venue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("raydium", "Raydium"),
            ("meteora", "Meteora"),
            ("split", "Split"),
            ("none", "Not routed yet"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        value = self.value()
        if value == "none":
            return queryset.filter(selected_dex="")
        if value:
            return queryset.filter(selected_dex=value)
        return queryset


class RetryFilter(admin.SimpleListFilter):
    title = "retry"
    parameter_name = "retry"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("scheduled", "Retry scheduled"), ("retried", "Took more than one attempt")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        if self.value() == "scheduled":
            return queryset.filter(status=OrderStatus.FAILED, next_attempt_at__isnull=False)
        if self.value() == "retried":
            return queryset.filter(attempts__gt=1)
        return queryset


# --- the events inline ---------------------------------------------------------------------------


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    ordering = ("seq",)
    fields = ("seq", "status", "attempt", "at", "elapsed", "payload_pretty")
    readonly_fields = fields
    verbose_name = "event"
    verbose_name_plural = "events (the order's full history, in seq order)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrderEvent]:
        return super().get_queryset(request).select_related("order").order_by("seq")

    @admin.display(description="at (UTC)")
    def at(self, event: OrderEvent) -> str:
        return iso(event.created_at) or "—"

    @admin.display(description="since submit")
    def elapsed(self, event: OrderEvent) -> str:
        seconds = (event.created_at - event.order.created_at).total_seconds()
        return f"+{seconds:.3f} s"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="payload")
    def payload_pretty(self, event: OrderEvent) -> str:
        return pretty_json(event.payload, summary=event_summary(event.status, event.payload or {}))


# --- orders --------------------------------------------------------------------------------------


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = (
        "order_id",
        "status_badge",
        "order_type",
        "pair",
        "amount",
        "venue",
        "attempts_used",
        "signature",
        "age",
    )
    list_display_links = ("order_id",)
    list_filter = (
        "status",
        "order_type",
        VenueFilter,
        ("created_at", admin.DateFieldListFilter),
        RetryFilter,
    )
    search_fields = ("id",)  # shows the search box; get_search_results does the real work
    search_help_text = (
        "An order id (whole or its first characters), a wallet address or a transaction signature."
    )
    ordering = ("-created_at",)
    list_per_page = 50
    list_max_show_all = 500
    show_full_result_count = False  # "N of all" would count the whole table on every page
    actions = ("requeue_orders", "cancel_orders")
    inlines = (OrderEventInline,)

    class Media:
        css = {"all": ("oe/admin.css",)}

    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    ("status", "order_type", "attempts", "max_attempts"),
                    "wallet_address",
                    ("token_in", "token_out", "amount_in_", "slippage"),
                    ("limit_price_", "expires_at_", "triggered_at_"),
                    ("selected_dex", "executed_price_", "amount_out_"),
                    "tx_hash",
                    ("error_code", "error"),
                    ("next_attempt_at_", "created_at_", "updated_at_"),
                )
            },
        ),
        ("Route", {"fields": ("quote_pretty",)}),
        ("Transaction", {"classes": ("collapse",), "fields": ("transaction_pretty",)}),
        (
            "Bookkeeping",
            {
                "classes": ("collapse",),
                "fields": ("idempotency_key", "request_fingerprint", "last_seq"),
            },
        ),
    )
    readonly_fields = (
        "id",
        "status",
        "order_type",
        "attempts",
        "max_attempts",
        "wallet_address",
        "token_in",
        "token_out",
        "amount_in_",
        "slippage",
        "limit_price_",
        "expires_at_",
        "triggered_at_",
        "selected_dex",
        "executed_price_",
        "amount_out_",
        "tx_hash",
        "error_code",
        "error",
        "next_attempt_at_",
        "created_at_",
        "updated_at_",
        "quote_pretty",
        "transaction_pretty",
        "idempotency_key",
        "request_fingerprint",
        "last_seq",
    )

    # Orders are written by the engine only; the admin reads them and offers the two actions.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the history is the audit trail

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Order]:
        # The list never shows the large JSON columns: leave them in the database.
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match is not None and (match.url_name or "").endswith("_changelist"):
            queryset = queryset.defer("quote", "transaction", "request_fingerprint", "error")
        return queryset

    # -- search -----------------------------------------------------------------------------

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Order], search_term: str
    ) -> tuple[QuerySet[Order], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=UUID(term)), False
        except ValueError:
            pass
        condition = Q(wallet_address=term) | Q(tx_hash=term)
        lowered = term.lower()
        if _HEX_PREFIX.match(lowered):
            condition |= _id_prefix(lowered)
        if _BASE58.match(term):
            # The start of a wallet or signature, as the dashboard shows them shortened.
            condition |= Q(wallet_address__startswith=term) | Q(tx_hash__startswith=term)
        return queryset.filter(condition), False

    # -- columns ----------------------------------------------------------------------------

    @admin.display(description="order", ordering="id")
    def order_id(self, order: Order) -> str:
        return format_html('<code title="{}">{}</code>', order.id, short_id(order.id))

    @admin.display(description="status", ordering="status")
    def status_badge(self, order: Order) -> str:
        retry = " ↻" if order.status == OrderStatus.FAILED and order.next_attempt_at else ""
        return format_html(
            '<span class="oe-status oe-status--{}" title="{}">{}{}</span>',
            order.status,
            "another attempt is scheduled" if retry else order.status,
            order.status,
            retry,
        )

    @admin.display(description="pair")
    def pair(self, order: Order) -> str:
        return f"{order.token_in} → {order.token_out}"

    @admin.display(description="amount in", ordering="amount_in")
    def amount(self, order: Order) -> str:
        return f"{_plain(order.amount_in)} {order.token_in}"

    @admin.display(description="venue", ordering="selected_dex")
    def venue(self, order: Order) -> str:
        return order.selected_dex or "—"

    @admin.display(description="attempts", ordering="attempts")
    def attempts_used(self, order: Order) -> str:
        return f"{order.attempts}/{order.max_attempts}"

    @admin.display(description="signature")
    def signature(self, order: Order) -> str:
        if not order.tx_hash:
            return "—"
        return format_html(
            '<code title="{}">{}</code>', order.tx_hash, short_signature(order.tx_hash)
        )

    @admin.display(description="age", ordering="created_at")
    def age(self, order: Order) -> str:
        return format_html(
            '<span title="{}">{}</span>',
            order.created_at.isoformat(timespec="seconds"),
            age_text(timezone.now() - order.created_at),
        )

    # -- one order's page: amounts as a person writes them, times to the millisecond ----------

    @admin.display(description="amount in")
    def amount_in_(self, order: Order) -> str:
        return f"{_plain(order.amount_in)} {order.token_in}"

    @admin.display(description="slippage")
    def slippage(self, order: Order) -> str:
        return f"{_plain(order.slippage_percent)} % ({order.slippage_bps} bps)"

    @admin.display(description="limit price")
    def limit_price_(self, order: Order) -> str:
        if order.limit_price is None:
            return "—"
        return f"{_plain(order.limit_price)} {order.token_out} per {order.token_in}"

    @admin.display(description="executed price")
    def executed_price_(self, order: Order) -> str:
        if order.executed_price is None:
            return "—"
        return f"{_plain(order.executed_price)} {order.token_out} per {order.token_in}"

    @admin.display(description="amount out")
    def amount_out_(self, order: Order) -> str:
        return "—" if order.amount_out is None else f"{_plain(order.amount_out)} {order.token_out}"

    @admin.display(description="expires at (UTC)")
    def expires_at_(self, order: Order) -> str:
        return iso(order.expires_at) or "—"

    @admin.display(description="triggered at (UTC)")
    def triggered_at_(self, order: Order) -> str:
        return iso(order.triggered_at) or "—"

    @admin.display(description="next attempt at (UTC)")
    def next_attempt_at_(self, order: Order) -> str:
        return iso(order.next_attempt_at) or "—"

    @admin.display(description="created at (UTC)")
    def created_at_(self, order: Order) -> str:
        return iso(order.created_at) or "—"

    @admin.display(description="updated at (UTC)")
    def updated_at_(self, order: Order) -> str:
        return iso(order.updated_at) or "—"

    @admin.display(description="route")
    def quote_pretty(self, order: Order) -> str:
        public = (order.quote or {}).get("public")
        if not public:
            return "—"
        legs = public.get("legs") or []
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td><td>{}</td><td>{} %</td></tr>",
            (
                (
                    leg.get("dex"),
                    leg.get("tokenIn"),
                    leg.get("tokenOut"),
                    leg.get("inAmount"),
                    leg.get("outAmount"),
                    leg.get("fee"),
                    leg.get("percent"),
                )
                for leg in legs
            ),
        )
        table = format_html(
            '<table class="oe-legs"><thead><tr><th>venue</th><th>leg</th><th>in</th>'
            "<th>out</th><th>fee (in)</th><th>share</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )
        headline = format_html(
            "<p><strong>{}</strong> via {} — {} out (min {}), impact {} %, fee {}</p>",
            public.get("dex"),
            " → ".join(public.get("route") or []),
            public.get("amountOut"),
            public.get("minAmountOut", "?"),
            public.get("priceImpact"),
            public.get("fee"),
        )
        return format_html("{}{}{}", headline, table, pretty_json(public, summary="as JSON"))

    @admin.display(description="transaction")
    def transaction_pretty(self, order: Order) -> str:
        return pretty_json(order.transaction)

    # -- the two actions, through the same services as the API --------------------------------

    def response_action(self, request: HttpRequest, queryset: QuerySet[Order]) -> Any:
        """Refuse an action whose selection holds something that is not an order id (a stale or
        hand-made form): Django's admin filters on it as it stands, and the UUID field's
        ValidationError would be a 500. The operator gets a message and the list again."""
        selected = request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME)
        invalid = [value for value in selected if _uuid_or_none(value) is None]
        if invalid:
            shown = ", ".join(repr(value[:40]) for value in invalid[:3])
            self.message_user(
                request, f"Nothing was done: not an order id: {shown}.", messages.ERROR
            )
            return None
        return super().response_action(request, queryset)

    @admin.action(description="Requeue selected failed/expired orders (through the engine)")
    def requeue_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        by = request.user.get_username()
        self._apply(
            request,
            queryset,
            verb="Requeued",
            call=lambda pk: order_requeue(order_id=pk, by=by),
        )

    @admin.action(description="Cancel selected pending orders (through the engine)")
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        reason = f"cancelled by operator {request.user.get_username()}"
        self._apply(
            request,
            queryset,
            verb="Cancelled",
            call=lambda pk: order_cancel(order_id=pk, reason=reason),
        )

    def _apply(
        self,
        request: HttpRequest,
        queryset: QuerySet[Order],
        *,
        verb: str,
        call: Callable[[UUID], Order],
    ) -> tuple[list[UUID], dict[str, list[UUID]]]:
        """Run the service on each order (each in its own transaction, under the row lock the
        service takes) and report: one success line, one warning line per reason skipped."""
        done: list[UUID] = []
        skipped: dict[str, list[UUID]] = defaultdict(list)
        for pk in queryset.order_by("created_at").values_list("pk", flat=True):
            try:
                call(pk)
            except OrderError as error:
                skipped[error.message].append(pk)
            else:
                done.append(pk)
        if done:
            self.message_user(
                request,
                f"{verb} {_count(len(done))}: {_ids(done)}.",
                messages.SUCCESS,
            )
        for reason, ids in skipped.items():
            self.message_user(
                request,
                f"Skipped {_count(len(ids))} ({reason}): {_ids(ids)}.",
                messages.WARNING,
            )
        if not done and not skipped:
            self.message_user(request, "No orders were selected.", messages.INFO)
        return done, skipped

    # -- the same two actions as buttons on one order's page -----------------------------------

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        own = [
            path(
                "<uuid:object_id>/requeue/",
                self.admin_site.admin_view(require_POST(self.requeue_one)),
                name="{}_{}_requeue".format(*info),
            ),
            path(
                "<uuid:object_id>/cancel/",
                self.admin_site.admin_view(require_POST(self.cancel_one)),
                name="{}_{}_cancel".format(*info),
            ),
        ]
        return own + super().get_urls()

    def requeue_one(self, request: HttpRequest, object_id: UUID) -> HttpResponse:
        return self._one(request, object_id, self.requeue_orders)

    def cancel_one(self, request: HttpRequest, object_id: UUID) -> HttpResponse:
        return self._one(request, object_id, self.cancel_orders)

    def _one(
        self,
        request: HttpRequest,
        object_id: UUID,
        action: Callable[[HttpRequest, QuerySet[Order]], None],
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        order = get_object_or_404(Order, pk=object_id)
        action(request, Order.objects.filter(pk=order.pk))
        return HttpResponseRedirect(reverse("admin:orders_order_change", args=[order.pk]))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        order = Order.objects.filter(pk=_uuid_or_none(object_id)).first()
        context = {
            **(extra_context or {}),
            # The page's heading: the order as an operator names it, not its raw Decimal.
            "subtitle": (
                f"{order.order_type} {_plain(order.amount_in)} {order.token_in} → "
                f"{order.token_out} · {order.status} · {short_id(order.pk)}"
                if order
                else None
            ),
            "can_requeue": bool(
                order and order.status in (OrderStatus.FAILED, OrderStatus.EXPIRED)
            ),
            "can_cancel": bool(order and order.status == OrderStatus.PENDING),
        }
        return super().change_view(request, object_id, form_url, extra_context=context)


@admin.register(OrderEvent)
class OrderEventAdmin(admin.ModelAdmin):
    """Every event of every order, for searching across orders (errors, venues, one wallet)."""

    list_display = ("order_link", "seq", "status", "attempt", "created_at", "summary")
    list_filter = ("status", ("created_at", admin.DateFieldListFilter))
    search_fields = ("order__id",)
    search_help_text = "An order id (whole)."
    show_full_result_count = False
    list_per_page = 100
    ordering = ("-id",)  # insertion order, on the primary key's index
    fields = ("order", "seq", "status", "attempt", "created_at", "payload_pretty")
    readonly_fields = fields

    class Media:
        css = {"all": ("oe/admin.css",)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[OrderEvent], search_term: str
    ) -> tuple[QuerySet[OrderEvent], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        pk = _uuid_or_none(term)
        if pk is not None:
            return queryset.filter(order_id=pk), False
        if _HEX_PREFIX.match(term.lower()):
            return queryset.filter(
                order_id__in=Order.objects.filter(_id_prefix(term.lower())).values("pk")
            ), False
        return queryset.none(), False

    @admin.display(description="order", ordering="order_id")
    def order_link(self, event: OrderEvent) -> str:
        url = reverse("admin:orders_order_change", args=[event.order_id])
        return format_html(
            '<a href="{}"><code title="{}">{}</code></a>',
            url,
            event.order_id,
            short_id(event.order_id),
        )

    @admin.display(description="what")
    def summary(self, event: OrderEvent) -> str:
        return event_summary(event.status, event.payload or {})

    @admin.display(description="payload")
    def payload_pretty(self, event: OrderEvent) -> str:
        return pretty_json(event.payload)


# --- helpers -------------------------------------------------------------------------------------


def _uuid_or_none(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


def _id_prefix(prefix: str) -> Q:
    """The ids that start with `prefix` as a range on the primary key (UUIDs sort as their hex),
    so a short id pasted from the dashboard is an index range scan, not a cast of every row."""
    digits = prefix.replace("-", "")
    if not digits or len(digits) > 32:
        return Q(pk__in=[])
    low = UUID(digits.ljust(32, "0"))
    high = UUID(digits.ljust(32, "f"))
    return Q(pk__gte=low, pk__lte=high)


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def _count(n: int) -> str:
    return f"{n} order" if n == 1 else f"{n} orders"


def _ids(ids: Iterable[UUID]) -> str:
    ids = list(ids)
    shown = ", ".join(short_id(pk) for pk in ids[:MESSAGE_ID_LIMIT])
    rest = len(ids) - MESSAGE_ID_LIMIT
    return f"{shown} and {rest} more" if rest > 0 else shown
