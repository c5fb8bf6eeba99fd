"""Accounts: opening and viewing them with their balances (`service`), status and limit
changes by finance (`rules`), and their queries, including the ordered row locks the
ledger posting takes (`repository`)."""
