"""The package every process shares: settings, logging, money, models, sessions,
repositories, services and the ledger posting itself (the code that moves money).

It imports nothing from `api`, `workers` or `scheduler`.
"""
