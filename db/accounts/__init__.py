"""Accounts: opening and viewing them with their balances, who may see which, status and
limit changes by finance (`service`), and their queries, including the ordered row locks
the ledger posting takes (`repository`)."""
