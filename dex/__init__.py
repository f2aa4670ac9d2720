"""The market: tokens, pools, the venues' math (Raydium, Meteora), routing and the simulated chain.

This package knows nothing of orders. The engine talks to it through `dex.types`,
`dex.tokens`, `dex.router` and `dex.chain`.
"""
