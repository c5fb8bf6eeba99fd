"""The package every process shares, one sub-package per domain (Polar-style):

- `core/`: settings, logs, errors, money, currencies, principal, JWT (no SQLAlchemy)
- `models.py`, `session.py` (unit of work), `migrate.py`, `pagination.py`
- `ledger/`: the posting (the only code that moves money), limits, verify, rebuild
- `transactions/`, `batches/`, `schedules/`, `accounts/`, `auth/`, `audit/`: each with
  its `service` (rules, visibility, state changes) and `repository` (queries)
- `ops/`: embedded servers and metrics directories

It imports nothing from `api`, `workers` or `scheduler`.
"""
