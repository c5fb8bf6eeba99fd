"""Validation of batch lines: the request-time rules of a single transfer, line by line,
never stopping at the first problem.

Lines are validated in blocks so the accounts a block mentions are fetched with one
query (and cached for the rest of the file); a million lines cost a few thousand
queries, not a million. A line either becomes an `Accepted` (the transaction it will
be) or a `Rejected` with a stable code and a reason a finance person can act on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from db.accounts import repository as accounts_repo
from db.batches import line_repository as lines_repo
from db.batches.format import RAW_ECHO_CHARS, Record
from db.core.config import Settings
from db.core.currencies import is_known_currency
from db.core.errors import RuleViolation
from db.core.money import AmountError, parse_amount
from db.models import Account
from db.transactions.service import MoneyMovement, check_request_time_rules

MAX_REFERENCE_CHARS = 255


@dataclass(slots=True)
class Accepted:
    line: int
    type: str  # transfer | credit | debit
    from_account_id: uuid.UUID
    to_account_id: uuid.UUID
    amount_minor: int
    currency: str
    reference: str | None


@dataclass(slots=True)
class Rejected:
    line: int
    code: str
    reason: str
    raw: dict[str, Any] | None


def _raw(fields: dict[str, str]) -> dict[str, str]:
    return {name: value[:RAW_ECHO_CHARS] for name, value in fields.items()}


class LineValidator:
    """Stateful across one file: the account cache and the references seen so far."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self.session = session
        self.max_amount = settings.max_amount
        self._accounts: dict[uuid.UUID, Account | None] = {}
        self._system: dict[str, uuid.UUID] = {}
        self._references: dict[str, int] = {}

    def validate(self, records: list[Record]) -> list[Accepted | Rejected]:
        """Validate one block of records (in line order)."""
        parsed: list[tuple[Record, uuid.UUID | None, uuid.UUID | None, int] | Rejected] = []
        wanted: set[uuid.UUID] = set()
        for record in records:
            outcome = self._syntax(record)
            if isinstance(outcome, Rejected):
                parsed.append(outcome)
                continue
            source, target, _ = outcome
            wanted.update(i for i in (source, target) if i is not None and i not in self._accounts)
            parsed.append((record, *outcome))
        if wanted:
            found = lines_repo.accounts_by_id(self.session, wanted)
            for account_id in wanted:
                self._accounts[account_id] = found.get(account_id)
        return [item if isinstance(item, Rejected) else self._rules(*item) for item in parsed]

    def _syntax(self, record: Record) -> tuple[uuid.UUID | None, uuid.UUID | None, int] | Rejected:
        """Checks that need no database: ids, currency, amount, reference."""
        if record.fields is None:
            return Rejected(record.line, record.code or "malformed_csv", record.reason or "", record.raw)
        fields = record.fields

        def reject(code: str, reason: str) -> Rejected:
            return Rejected(record.line, code, reason, _raw(fields))

        ids: list[uuid.UUID | None] = []
        for name in ("from_account_id", "to_account_id"):
            text = fields.get(name, "")
            if not text:
                ids.append(None)
                continue
            try:
                ids.append(uuid.UUID(text))
            except ValueError:
                return reject("invalid_account_id", f"{name}: {text[:40]!r} is not an account id")
        source, target = ids
        if source is None and target is None:
            return reject("missing_account", "from_account_id or to_account_id is required")
        if source == target:
            return reject("same_account", "from and to accounts must differ")
        currency = fields.get("currency", "")
        if not is_known_currency(currency):
            return reject("invalid_currency", f"currency: {currency[:10]!r} is not an ISO 4217 code")
        try:
            amount_minor = parse_amount(fields.get("amount", ""), currency, max_amount=self.max_amount)
        except AmountError as exc:
            return reject("invalid_amount", f"amount: {exc}")
        reference = fields.get("reference") or None
        if reference is not None:
            if len(reference) > MAX_REFERENCE_CHARS:
                return reject("invalid_reference", f"reference: longer than {MAX_REFERENCE_CHARS} characters")
            first = self._references.setdefault(reference, record.line)
            if first != record.line:
                return reject(
                    "duplicate_reference", f"reference {reference!r} was already used on line {first}"
                )
        return source, target, amount_minor

    def _rules(
        self, record: Record, source_id: uuid.UUID | None, target_id: uuid.UUID | None, amount_minor: int
    ) -> Accepted | Rejected:
        """The request-time rules of a single transfer, against the cached accounts."""
        fields = record.fields or {}
        currency = fields["currency"]

        def reject(code: str, reason: str) -> Rejected:
            return Rejected(record.line, code, reason, _raw(fields))

        accounts: list[Account] = []
        for name, account_id in (("from_account_id", source_id), ("to_account_id", target_id)):
            if account_id is None:
                continue
            account = self._accounts.get(account_id)
            if account is None:
                return reject("unknown_account", f"{name}: account {account_id} not found")
            if account.kind == "system":
                return reject(
                    "invalid_account", f"{name}: system accounts move money only as credit or debit"
                )
            accounts.append(account)
        kind = "transfer" if source_id and target_id else ("credit" if target_id else "debit")
        if kind == "credit":
            source, target = self._system_account(currency), accounts[0]
        elif kind == "debit":
            source, target = accounts[0], self._system_account(currency)
        else:
            source, target = accounts
        try:
            check_request_time_rules(
                MoneyMovement(type=kind, amount=fields["amount"], currency=currency),
                source,
                target,
                None,  # batches are finance's: every account is readable
            )
        except RuleViolation as exc:
            return reject(exc.code, exc.message)
        return Accepted(
            record.line, kind, source.id, target.id, amount_minor, currency, fields.get("reference") or None
        )

    def _system_account(self, currency: str) -> Account:
        account_id = self._system.get(currency)
        if account_id is None:
            account = accounts_repo.system_account(self.session, currency)
            self._system[currency] = account.id
            self._accounts[account.id] = account
            return account
        cached = self._accounts[account_id]
        assert cached is not None
        return cached
