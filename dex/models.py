"""The market's tables: the token registry, the venues' pools, the pairs' external prices and the
simulated chain's transactions. Written only by `dex` services (router, chain, drift, launch)."""

from __future__ import annotations

from django.db import models

AMOUNT_DIGITS = 40  # base units as exact integers: NUMERIC(40, 0) holds any u128


class Token(models.Model):
    symbol = models.CharField(max_length=16, unique=True)
    mint = models.CharField(max_length=44, unique=True)
    decimals = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("symbol",)

    def __str__(self) -> str:
        return self.symbol


class Pool(models.Model):
    class Venue(models.TextChoices):
        RAYDIUM = "raydium", "Raydium"
        METEORA = "meteora", "Meteora"

    address = models.CharField(max_length=44, unique=True)
    venue = models.CharField(max_length=16, choices=Venue.choices)
    # Meteora calls them X and Y; the price is token_b per token_a.
    token_a = models.ForeignKey(Token, on_delete=models.PROTECT, related_name="pools_as_a")
    token_b = models.ForeignKey(Token, on_delete=models.PROTECT, related_name="pools_as_b")
    reserve_a = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=0, default=0)
    reserve_b = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=0, default=0)
    # Raydium: trade fee per 1 000 000 (2 500 = 0.25 %).
    fee_rate = models.PositiveIntegerField(default=2_500)
    # Meteora DLMM: static fee parameters ...
    bin_step = models.PositiveIntegerField(default=0)
    base_factor = models.PositiveIntegerField(default=0)
    filter_period = models.PositiveIntegerField(default=30)
    decay_period = models.PositiveIntegerField(default=600)
    reduction_factor = models.PositiveIntegerField(default=5_000)
    variable_fee_control = models.PositiveIntegerField(default=0)
    max_volatility_accumulator = models.PositiveIntegerField(default=0)
    # ... and dynamic state: bins as [[id, x, y], ...] sorted by id, integers exact in jsonb.
    active_id = models.IntegerField(default=0)
    bins = models.JSONField(default=list, blank=True)
    volatility_accumulator = models.PositiveIntegerField(default=0)
    volatility_reference = models.PositiveIntegerField(default=0)
    index_reference = models.IntegerField(default=0)
    last_swap_ts = models.BigIntegerField(default=0)  # unix seconds
    # Where this venue sits against the pair's external price, in basis points; the drift keeps
    # the venues of a pair 2-5 % apart as on mainnet.
    spread_bps = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("id",)
        indexes = [models.Index(fields=["token_a", "token_b"])]
        constraints = [
            models.UniqueConstraint(
                fields=["venue", "token_a", "token_b"], name="dex_pool_venue_pair"
            ),
            models.CheckConstraint(
                condition=~models.Q(token_a=models.F("token_b")), name="dex_pool_two_tokens"
            ),
            models.CheckConstraint(
                condition=models.Q(reserve_a__gte=0, reserve_b__gte=0),
                name="dex_pool_reserves_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.venue} {self.token_a_id}/{self.token_b_id} {self.address}"


class PairPrice(models.Model):
    """The external ("CEX") price of a pair, token_b per token_a in whole tokens; drifts by a
    seeded random walk and pulls the pools toward it."""

    token_a = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="+")
    token_b = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="+")
    price = models.DecimalField(max_digits=48, decimal_places=24)
    step = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token_a", "token_b"], name="dex_pairprice_pair")
        ]

    def __str__(self) -> str:
        return f"{self.token_a_id}/{self.token_b_id} {self.price}"


class ChainTransaction(models.Model):
    """One transaction the simulated chain has seen. A row exists once the chain accepted it."""

    class State(models.TextChoices):
        PENDING = "pending"
        LANDED = "landed"
        FAILED = "failed"

    signature = models.CharField(max_length=100, unique=True)
    reference = models.CharField(max_length=200, unique=True)
    tx = models.JSONField()  # Transaction.to_state()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    lands_at = models.DateTimeField()
    # The fate drawn at send time: a failure code the landing will report ("blockhash_expired").
    fail_at_landing = models.CharField(max_length=32, blank=True, default="")
    amount_out = models.DecimalField(
        max_digits=AMOUNT_DIGITS, decimal_places=0, null=True, blank=True
    )
    error_code = models.CharField(max_length=32, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    landed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["state", "lands_at"])]

    def __str__(self) -> str:
        return f"{self.signature[:12]}… {self.state}"
