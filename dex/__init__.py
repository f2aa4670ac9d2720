"""The market: tokens, pools, the venues' math (Raydium, Meteora), routing and the simulated chain.

This package knows nothing of orders. The engine talks to it through `dex.types` (the shared
vocabulary), `dex.tokens` (registry, unit conversions), `dex.router` (route_best, market_load,
token_has_pool) and `dex.chain` (transaction_build, transaction_send, signature_status).
`dex.raydium` and `dex.meteora` are the pure venue math, `dex.pools` the pool snapshots,
`dex.drift` + `dex.tasks` the price drift, `dex.launch` new tokens and their first pools.
"""
