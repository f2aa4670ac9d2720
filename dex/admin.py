"""The market in the Django admin: tokens, pools (reserves in whole tokens and the current
price), the pairs' external prices and the simulated chain's transactions, all read-only.

The market is written by `dex` services only (router, chain, drift, launch), so the one write
offered here is "Launch a token", which calls `dex.launch.token_launch` as the management
command does; that is what a waiting sniper order is waiting for.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.db.models.fields.json import KT
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html

from dex import meteora, models
from dex.types import DexError

VENUES = (("raydium", "Raydium"), ("meteora", "Meteora"))
METEORA_FEE_PRECISION = Decimal(10) ** 9  # DLMM fees are per 1e9


def human(value: Decimal | int | None, places: int = 8) -> str:
    """A number for a person: thousands separators, at most `places` significant decimals."""
    if value is None:
        return "—"
    value = Decimal(value)
    if value == 0:
        return "0"
    with localcontext(prec=90):  # room for a NUMERIC(40) reserve with its decimals shown
        if abs(value) >= 1000:
            return f"{value.quantize(Decimal('0.01')):,.2f}".rstrip("0").rstrip(".")
        if abs(value) >= 1:
            return f"{value.quantize(Decimal('0.0001')):,.4f}".rstrip("0").rstrip(".")
        # Small prices (memecoins): keep `places` significant digits, no exponent.
        quantum = Decimal(1).scaleb(value.adjusted() - places + 1)
        return format(value.quantize(quantum).normalize(), "f")


def whole(units: Decimal | int, decimals: int) -> Decimal:
    return Decimal(units).scaleb(-decimals)


def short(text: str, size: int = 6) -> str:
    return f"{text[:size]}…{text[-size:]}" if len(text) > 2 * size + 2 else text


# --- tokens --------------------------------------------------------------------------------------


@admin.register(models.Token)
class TokenAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ("oe/admin.css",)}

    list_display = ("symbol", "name", "mint_short", "decimals", "created_at")
    search_fields = ("symbol", "=mint", "name")
    ordering = ("symbol",)
    readonly_fields = ("symbol", "mint", "decimals", "name", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are registered by `token_register` / "Launch a token"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a token never changes its mint or decimals (the registry caches them)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="mint", ordering="mint")
    def mint_short(self, token: models.Token) -> str:
        return format_html('<code title="{}">{}</code>', token.mint, short(token.mint))


# --- pools ---------------------------------------------------------------------------------------


def pool_price(pool: models.Pool) -> Decimal | None:
    """token_b per token_a in whole tokens: the constant-product ratio on Raydium, the active
    bin's price on Meteora."""
    a, b = pool.token_a.decimals, pool.token_b.decimals
    if pool.venue == models.Pool.Venue.METEORA:
        if not pool.bin_step:
            return None
        return meteora.raw_price(pool.bin_step, pool.active_id).scaleb(a - b)
    if not pool.reserve_a:
        return None
    return (Decimal(pool.reserve_b) / Decimal(pool.reserve_a)).scaleb(a - b)


class LaunchTokenForm(forms.Form):
    symbol = forms.CharField(
        max_length=16, help_text="A new symbol (registered with a fresh mint)."
    )
    quote_symbol = forms.CharField(
        max_length=16, initial="SOL", label="Quote token", help_text="What it trades against."
    )
    venues = forms.MultipleChoiceField(
        choices=VENUES,
        initial=[v for v, _ in VENUES],
        widget=forms.CheckboxSelectMultiple,
    )
    price = forms.DecimalField(
        required=False,
        min_value=Decimal("1e-18"),
        max_digits=40,
        decimal_places=18,
        help_text="Quote tokens per token; empty: the launch default.",
    )
    liquidity = forms.DecimalField(
        required=False,
        min_value=Decimal("1e-9"),
        max_digits=30,
        decimal_places=9,
        help_text="Whole quote tokens in each pool's quote side; empty: the launch default.",
    )
    decimals = forms.IntegerField(min_value=0, max_value=18, initial=6)


@admin.register(models.Pool)
class PoolAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ("oe/admin.css",)}

    list_display = (
        "pair",
        "venue",
        "reserve_a_human",
        "reserve_b_human",
        "price",
        "spread",
        "fee",
    )
    list_filter = ("venue",)
    search_fields = ("token_a__symbol", "token_b__symbol", "=address")
    list_select_related = ("token_a", "token_b")
    show_full_result_count = False
    ordering = ("token_a__symbol", "token_b__symbol", "venue")
    fieldsets = (
        (None, {"fields": ("address", "venue", ("token_a", "token_b"))}),
        (
            "State",
            {
                "fields": (
                    ("reserve_a_human", "reserve_b_human"),
                    ("reserve_a", "reserve_b"),
                    ("price", "spread", "fee"),
                    ("active_id", "bin_step", "bin_count"),
                    ("volatility_accumulator", "volatility_reference", "index_reference"),
                    ("created_at", "updated_at"),
                )
            },
        ),
    )
    readonly_fields = (
        "address",
        "venue",
        "token_a",
        "token_b",
        "reserve_a_human",
        "reserve_b_human",
        "reserve_a",
        "reserve_b",
        "price",
        "spread",
        "fee",
        "active_id",
        "bin_step",
        "bin_count",
        "volatility_accumulator",
        "volatility_reference",
        "index_reference",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # pools open through "Launch a token"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # reserves move only by swaps and the drift

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[models.Pool]:
        queryset = super().get_queryset(request).select_related("token_a", "token_b")
        match = request.resolver_match
        if match is not None and (match.url_name or "").endswith("_changelist"):
            queryset = queryset.defer("bins")  # the list needs the active bin, not every bin
        return queryset

    @admin.display(description="pair", ordering="token_a__symbol")
    def pair(self, pool: models.Pool) -> str:
        return f"{pool.token_a.symbol}/{pool.token_b.symbol}"

    @admin.display(description="reserve A", ordering="reserve_a")
    def reserve_a_human(self, pool: models.Pool) -> str:
        return f"{human(whole(pool.reserve_a, pool.token_a.decimals), 6)} {pool.token_a.symbol}"

    @admin.display(description="reserve B", ordering="reserve_b")
    def reserve_b_human(self, pool: models.Pool) -> str:
        return f"{human(whole(pool.reserve_b, pool.token_b.decimals), 6)} {pool.token_b.symbol}"

    @admin.display(description="price (B per A)")
    def price(self, pool: models.Pool) -> str:
        value = pool_price(pool)
        if value is None:
            return "—"
        return f"{human(value)} {pool.token_b.symbol}/{pool.token_a.symbol}"

    @admin.display(description="spread", ordering="spread_bps")
    def spread(self, pool: models.Pool) -> str:
        return f"{Decimal(pool.spread_bps) / 100:+.2f} %"

    @admin.display(description="fee")
    def fee(self, pool: models.Pool) -> str:
        if pool.venue == models.Pool.Venue.METEORA:
            base = Decimal(pool.base_factor * pool.bin_step * 10) / METEORA_FEE_PRECISION * 100
            return f"{human(base, 4)} % + var · step {pool.bin_step}"
        return f"{human(Decimal(pool.fee_rate) / 10_000, 4)} %"

    @admin.display(description="bins")
    def bin_count(self, pool: models.Pool) -> int:
        return len(pool.bins or [])

    # -- "Launch a token" ---------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "launch/",
                self.admin_site.admin_view(self.launch_view),
                name="dex_pool_launch",
            )
        ]
        return own + super().get_urls()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), "can_launch": _can_launch(request)}
        return super().changelist_view(request, extra_context=context)

    def launch_view(self, request: HttpRequest) -> HttpResponse:
        if not _can_launch(request):
            return HttpResponse("Launching a token needs the dex.add_pool permission.", status=403)
        form = LaunchTokenForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            from dex.launch import token_launch  # the venue engineer's service, loaded lazily

            data = form.cleaned_data
            try:
                pools = token_launch(
                    data["symbol"],
                    quote_symbol=data["quote_symbol"],
                    venues=data["venues"],
                    reserve_in_quote=data["liquidity"],
                    price=data["price"],
                    decimals=data["decimals"],
                )
            except (ValueError, DexError, InvalidOperation) as error:
                form.add_error(None, str(error))
            else:
                if pools:
                    described = ", ".join(
                        f"{p.venue} {p.token_a.symbol}/{p.token_b.symbol}" for p in pools
                    )
                    self.message_user(
                        request,
                        f"Launched {data['symbol']}: opened {described}. "
                        "Sniper orders waiting for it fire on the watcher's next pass.",
                        messages.SUCCESS,
                    )
                else:
                    self.message_user(
                        request,
                        f"{data['symbol']} already has pools on those venues: nothing opened.",
                        messages.WARNING,
                    )
                url = reverse("admin:dex_pool_changelist")
                return HttpResponseRedirect(f"{url}?q={data['symbol']}")
        context = {
            **self.admin_site.each_context(request),
            "title": "Launch a token",
            "opts": self.opts,
            "form": form,
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/dex/pool/launch.html", context)


def _can_launch(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.has_perm("dex.add_pool"))


# --- external prices -----------------------------------------------------------------------------


@admin.register(models.PairPrice)
class PairPriceAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ("oe/admin.css",)}

    list_display = ("pair", "price_human", "step", "updated_at")
    list_select_related = ("token_a", "token_b")
    readonly_fields = ("token_a", "token_b", "price", "step", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="pair", ordering="token_a__symbol")
    def pair(self, price: models.PairPrice) -> str:
        return f"{price.token_a.symbol}/{price.token_b.symbol}"

    @admin.display(description="price (B per A)", ordering="price")
    def price_human(self, price: models.PairPrice) -> str:
        return human(price.price)


# --- the simulated chain -------------------------------------------------------------------------


class ChainErrorFilter(admin.SimpleListFilter):
    """Fixed choices: a DISTINCT over every transaction would scan the table per page view."""

    title = "error"
    parameter_name = "error"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("slippage_exceeded", "slippage exceeded"),
            ("blockhash_expired", "blockhash expired"),
            ("insufficient_liquidity", "insufficient liquidity"),
            ("rpc_timeout", "RPC timeout"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[models.ChainTransaction]
    ) -> QuerySet[models.ChainTransaction]:
        return queryset.filter(error_code=self.value()) if self.value() else queryset


@admin.register(models.ChainTransaction)
class ChainTransactionAdmin(admin.ModelAdmin):
    list_display = (
        "signature_short",
        "state",
        "order_reference",
        "venue",
        "amount_out_human",
        "error_code",
        "lands_at",
        "landed_at",
        "created_at",
    )
    list_filter = ("state", ChainErrorFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("=signature", "reference")
    search_help_text = "A signature (whole) or an order id (whole or its start)."
    show_full_result_count = False
    ordering = ("-created_at",)
    list_per_page = 100
    readonly_fields = (
        "signature",
        "reference",
        "state",
        "lands_at",
        "landed_at",
        "fail_at_landing",
        "amount_out",
        "error_code",
        "error_message",
        "created_at",
        "updated_at",
        "tx_pretty",
    )
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[models.ChainTransaction]:
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match is not None and (match.url_name or "").endswith("_changelist"):
            # The list needs three values out of the stored transaction: take them in SQL and
            # leave the (large) JSON in the database.
            queryset = queryset.defer("tx").annotate(
                venue_name=KT("tx__quote__dex"),
                out_symbol=KT("tx__quote__tokenOut__symbol"),
                out_decimals=KT("tx__quote__tokenOut__decimals"),
            )
        return queryset

    def get_search_results(
        self,
        request: HttpRequest,
        queryset: QuerySet[models.ChainTransaction],
        search_term: str,
    ) -> tuple[QuerySet[models.ChainTransaction], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # The reference is "<order id>:<attempt>": an id (or its start) is a prefix of it.
        return queryset.filter(signature=term) | queryset.filter(
            reference__startswith=term.lower()
        ), False

    @admin.display(description="signature", ordering="signature")
    def signature_short(self, tx: models.ChainTransaction) -> str:
        return format_html('<code title="{}">{}</code>', tx.signature, short(tx.signature))

    @admin.display(description="order : attempt", ordering="reference")
    def order_reference(self, tx: models.ChainTransaction) -> str:
        order_id, _, attempt = tx.reference.partition(":")
        try:
            # A soft link into the engine's admin: dex imports nothing of orders.
            url = reverse("admin:orders_order_changelist")
        except NoReverseMatch:
            return tx.reference
        return format_html(
            '<a href="{}?q={}" title="{}"><code>{}</code></a> : {}',
            url,
            order_id,
            order_id,
            order_id[:8],
            attempt,
        )

    @admin.display(description="venue")
    def venue(self, tx: models.ChainTransaction) -> str:
        name = getattr(tx, "venue_name", None)
        if name is None and "tx" not in tx.get_deferred_fields():
            name = (tx.tx or {}).get("quote", {}).get("dex")
        return name or "—"

    @admin.display(description="amount out", ordering="amount_out")
    def amount_out_human(self, tx: models.ChainTransaction) -> str:
        if tx.amount_out is None:
            return "—"
        decimals = getattr(tx, "out_decimals", None)
        symbol = getattr(tx, "out_symbol", None)
        if decimals is None and "tx" not in tx.get_deferred_fields():
            token = (tx.tx or {}).get("quote", {}).get("tokenOut", {})
            decimals, symbol = token.get("decimals"), token.get("symbol")
        if decimals is None:
            return str(tx.amount_out)
        return f"{human(whole(tx.amount_out, int(decimals)), 6)} {symbol or ''}".strip()

    @admin.display(description="transaction")
    def tx_pretty(self, tx: models.ChainTransaction) -> str:
        import json

        return format_html(
            '<pre class="oe-json">{}</pre>', json.dumps(tx.tx, indent=2, sort_keys=True)
        )

    class Media:
        css = {"all": ("oe/admin.css",)}
