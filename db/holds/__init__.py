"""Holds (two-phase transfers): a reservation now, money moved later by one capture, or
released by a void or at expiry. Requests and releases (`service`), their queries
(`repository`), and the invariants `ledgerq verify` checks (`verify`); the worker's
decisions are the posting engine's (db/ledger/posting/holds.py)."""
