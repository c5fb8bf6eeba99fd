"""The package every process shares, one sub-package per domain (Polar-style):

- `core/`: settings, logs, errors, money, currencies, principal, JWT (no SQLAlchemy)
- `models.py`, `session.py` (unit of work), `migrate.py`
- `pagination.py`: keyset cursors and `KeysetPage` (every list endpoint's page)
- `idempotency.py`: `Submitted`, the replay rule and its header, for every request that
  creates money movement (transactions, batches)
- `ledger/`: the posting (`ledger/posting.py`, the only code that moves money; batches'
  chunks: `batches/posting.py`), limits, verify, rebuild
- `transactions/`, `batches/`, `schedules/`, `accounts/`, `auth/`, `audit/`: each with
  its `service` (rules, visibility, state changes: services return view objects) and
  `repository` (every query, the actors' and the CLI's included). Visibility lives in
  `transactions/views.py` and in each domain's service (`accounts.service.visible_account`,
  `schedules.service.visible_schedule`, `auth.users.visible_user`); a batch's status is
  written only by `batches/states.py`
- `ops/`: embedded servers, metrics, backups, backlog gauges

It imports nothing from `api`, `workers` or `scheduler`.
"""
