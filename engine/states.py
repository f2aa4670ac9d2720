"""The order's state machine: the one owner of which status may follow which.

pending → routing → building → submitted → confirmed
   │         └──────────┴──────────┴──→ failed ──→ routing  (another attempt)
   ├→ cancelled                           └──→ pending  (requeue by an operator)
   └→ expired ──→ pending (requeue)
"""

from __future__ import annotations

from orders.models import OrderStatus as S

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.ROUTING, S.CANCELLED, S.EXPIRED, S.FAILED}),
    S.ROUTING: frozenset({S.BUILDING, S.FAILED}),
    S.BUILDING: frozenset({S.SUBMITTED, S.FAILED}),
    S.SUBMITTED: frozenset({S.CONFIRMED, S.FAILED}),
    S.FAILED: frozenset({S.ROUTING, S.PENDING}),
    S.EXPIRED: frozenset({S.PENDING}),
    S.CONFIRMED: frozenset(),
    S.CANCELLED: frozenset(),
}

#: Statuses an order never leaves by itself (failed and expired only through an operator's requeue).
TERMINAL: frozenset[str] = frozenset({S.CONFIRMED, S.FAILED, S.CANCELLED, S.EXPIRED})
#: Statuses in which a worker is executing the order.
ACTIVE: frozenset[str] = frozenset({S.ROUTING, S.BUILDING, S.SUBMITTED})


def transition_allowed(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())
