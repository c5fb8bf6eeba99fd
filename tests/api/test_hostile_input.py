"""The hostile-input catalogue: every write endpoint and every query parameter of the
API, found by walking Flask's URL map (a new endpoint is covered without anyone
remembering), gets wrong types, NUL bytes, 1 MB strings, deep JSON, duplicate keys,
wrong content types, exponent / negative-zero / Unicode-digit amounts and integers at
2^31, 2^63 and 2^64; batch uploads get formula cells and traversal in file names.
Each must get a 4xx in the one error envelope, and nothing may be recorded."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.fixtures.ledger import sql

API = "/api/v1"
NUL = "x\u0000y"
MEGA = "m" * (1024 * 1024)
BIG_INTS = (2**31, 2**63, 2**64, -(2**63) - 1)
BAD_AMOUNTS = (
    "1e3",
    "1E2",
    "-0",
    "-0.00",
    "١٢",
    "１０",
    "1_000",
    " 1.00",
    "1.00\n",
    "0x10",
    "Infinity",
    "NaN",
    "-5.00",
)
AMOUNT_FIELDS = {"amount", "max_per_transaction", "daily_outgoing_limit", "overdraft_limit", "rate"}
RECORDED = [
    "transactions",
    "ledger_entries",
    "accounts",
    "balances",
    "users",
    "batches",
    "batch_items",
    "schedules",
    "fx_rate_versions",
]


def _recorded() -> dict[str, int]:
    existing = {row[0] for row in sql("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    counts = {t: sql(f"SELECT count(*) FROM {t}")[0][0] for t in RECORDED if t in existing}
    # A failed login is audited on purpose; anything else audited would be a record.
    counts["audit"] = sql("SELECT count(*) FROM audit_logs WHERE action <> 'auth.login_failed'")[0][0]
    return counts


@pytest.fixture
def world(make):
    admin, alice, bob = make.user("admin"), make.user(), make.user()
    a, b = make.account(alice, balance="100.00"), make.account(bob)
    # An exchange gets past everything but the one bad value: a EUR account and a rate.
    eur = make.account(bob, currency="EUR")
    from db.fx.service import set_rate
    from db.session import unit_of_work

    with unit_of_work() as uow:
        set_rate(uow.session, admin.principal, "USD", "EUR", rate="0.9", fee_bps=10, request_id=None)
    return {"admin": admin, "alice": alice, "a": a, "b": b, "eur": eur}


def _bases(w) -> dict[tuple[str, str], dict]:
    """A valid body per (method, rule): mutations are applied to one field at a time, so
    the request gets past everything but the one bad value."""
    money = {"amount": "1.00", "currency": "USD"}
    return {
        ("POST", "/auth/register"): {
            "username": "newcomer",
            "email": "n@example.com",
            "password": "k3!v9xZp_Lm2Rt8",
        },
        ("POST", "/auth/login"): {"username": w["alice"].username, "password": w["alice"].password},
        ("POST", "/auth/refresh"): {"refresh_token": "x"},
        ("POST", "/auth/logout"): {"refresh_token": "x"},
        ("PUT", "/users/<uuid:user_id>"): {"email": "alice2@example.com"},
        ("POST", "/accounts"): {"currency": "USD", "name": "savings"},
        ("POST", "/accounts/<uuid:account_id>/freeze"): {"reason": "why"},
        ("POST", "/accounts/<uuid:account_id>/unfreeze"): {"reason": "why"},
        ("POST", "/accounts/<uuid:account_id>/close"): {"reason": "why"},
        ("PUT", "/accounts/<uuid:account_id>/limits"): {
            "max_per_transaction": "10.00",
            "per_minute_outgoing_count": 5,
        },
        ("PATCH", "/accounts/<uuid:account_id>/limits"): {"overdraft_limit": "10.00"},
        ("POST", "/transactions/transfer"): {
            "from_account_id": str(w["a"]),
            "to_account_id": str(w["b"]),
            **money,
            "reference": "r",
            "metadata": {"k": "v"},
        },
        ("POST", "/transactions/exchange"): {
            "from_account_id": str(w["a"]),
            "to_account_id": str(w["eur"]),
            **money,
            "rate": "0.9",
            "reference": "r",
            "metadata": {"k": "v"},
        },
        ("PUT", "/fx/rates/<string:base>/<string:quote>"): {"rate": "1.5", "fee_bps": 10},
        ("POST", "/transactions/credit"): {"account_id": str(w["a"]), **money, "reference": "r"},
        ("POST", "/transactions/debit"): {"account_id": str(w["a"]), **money, "reference": "r"},
        ("POST", "/schedules"): {
            "from_account_id": str(w["a"]),
            "to_account_id": str(w["b"]),
            **money,
            "interval_seconds": 3600,
            "reference": "r",
        },
        ("POST", "/batches"): {
            "items": [
                {"from_account_id": str(w["a"]), "to_account_id": str(w["b"]), **money, "reference": "r"}
            ],
            "mode": "independent",
        },
    }


def _path(rule: str, w, real: bool) -> str:
    ids = {"user_id": w["alice"].id, "account_id": w["a"], "base": "USD", "quote": "EUR"} if real else {}
    return API + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids.get(m.group(1), uuid.uuid4())), rule)


def _routes(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API) and rule.rule != f"{API}/openapi.json":
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield method, rule.rule.removeprefix(API)


def _body_mutations(base: dict):
    """(label, raw body text, content type)."""
    as_json = "application/json"
    for value in ([], "text", 7, None):
        yield f"top-level {value!r}", json.dumps(value), as_json
    yield "deep JSON", json.dumps({**base, "metadata": "@"}).replace('"@"', "[" * 1000 + "]" * 1000), as_json
    key = next(iter(base), "k")
    yield "duplicate key", json.dumps(base)[:-1] + f', "{key}": {json.dumps(base.get(key))}}}', as_json
    yield "text/plain", json.dumps(base), "text/plain"
    yield "form", "a=1&b=2", "application/x-www-form-urlencoded"
    yield "unknown field", json.dumps({**base, "no_such_field": 1}), as_json
    for field, good in base.items():
        mutated = [("NUL", NUL), ("1 MB string", MEGA), ("10 kB string", "k" * 10_000)]
        mutated += [("list", [1])] if isinstance(good, dict) else [("object", {"x": 1})]
        if isinstance(good, dict):
            mutated += [("NUL in a nested key", {NUL: 1}), ("NUL in a nested value", {"k": NUL})]
        if isinstance(good, int) and not isinstance(good, bool):
            mutated += [(f"int {n}", n) for n in BIG_INTS] + [("float", 1.5), ("string", "12")]
        if field in AMOUNT_FIELDS:
            mutated += [(f"amount {a!r}", a) for a in BAD_AMOUNTS] + [("amount as number", 1.5)]
        for label, value in mutated:
            if field == "password" and label == "10 kB string":
                continue  # a long password is a wrong password: 401 below
            yield f"{field}: {label}", json.dumps({**base, field: value}), as_json


def _assert_refused(response, what: str, failures: list[str]) -> None:
    try:
        assert 400 <= response.status_code < 500, response.status_code
        error = response.get_json()["error"]
        assert set(error) == {"code", "message", "details"} and error["code"] != "internal_error"
    except (AssertionError, TypeError, KeyError) as problem:
        failures.append(f"{what}: {problem} {response.get_data(as_text=True)[:200]}")


def test_every_write_endpoint_refuses_hostile_bodies(app, client, world):
    bases = _bases(world)
    admin = world["admin"].headers
    before = _recorded()
    failures: list[str] = []
    walked = 0
    for method, rule in _routes(app):
        if method == "GET":
            continue
        base = bases.get((method, rule))
        path = _path(rule, world, real=base is not None)
        for label, body, content_type in _body_mutations(base or {}):
            if base is None and label.startswith(("top-level", "duplicate", "deep")) is False:
                continue  # no body schema: only the structural attacks apply
            response = client.open(path, method=method, data=body, content_type=content_type, headers=admin)
            _assert_refused(response, f"{method} {rule} [{label}]", failures)
            walked += 1
    assert walked > 400, walked
    assert not failures, f"{len(failures)} accepted or 5xx:\n" + "\n".join(failures[:40])
    assert _recorded() == before


def _query_params(app, client):
    spec = client.get(f"{API}/openapi.json").json
    for method, rule in _routes(app):
        if method != "GET":
            continue
        template = API + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)
        operation = spec["paths"][template]["get"]
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query":
                yield rule, parameter["name"], parameter.get("schema", {})


def test_every_query_parameter_refuses_hostile_values(app, client, world):
    admin = world["admin"].headers
    before = _recorded()
    failures: list[str] = []
    walked = 0
    for rule, name, schema in _query_params(app, client):
        path = _path(rule, world, real=True)
        values = [("NUL", NUL), ("1 MB", "q" * (1024 * 1024))]
        kind = schema.get("type")
        if kind in ("integer", "number"):
            values += [("not a number", "abc"), ("2^63", str(2**63)), ("2^64", str(2**64)), ("float", "1.5")]
        elif kind == "boolean":
            values += [("not a boolean", "maybe")]
        elif schema.get("format") in ("uuid", "date-time", "date"):
            values += [("not the format", "not-a-value")]
        for label, value in values:
            response = client.get(path, query_string={name: value}, headers=admin)
            _assert_refused(response, f"GET {rule}?{name} [{label}]", failures)
            walked += 1
    assert walked > 60, walked
    assert not failures, f"{len(failures)} accepted or 5xx:\n" + "\n".join(failures[:40])
    assert _recorded() == before


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        (
            "payroll.csv",
            b"from_account_id,to_account_id,amount,currency,reference\n,{b},1.00,USD,=cmd|' /C calc'!A0\n",
        ),
        (
            "payroll.csv",
            b"from_account_id,to_account_id,amount,currency,reference\n,{b},1.00,USD,@SUM(1+1)\n",
        ),
        ("payroll.csv", b"from_account_id,to_account_id,amount,currency,reference\n,{b},1.00,USD,+1+1\n"),
        ("../../etc/passwd", b"from_account_id,to_account_id,amount,currency,reference\n,{b},1.00,USD,ok\n"),
        ("..\\..\\boot.ini", b"from_account_id,to_account_id,amount,currency,reference\n,{b},1.00,USD,ok\n"),
        ("pay\u0000roll.csv", b"from_account_id,to_account_id,amount,currency,reference\n,{b},1.00,USD,ok\n"),
        ("/abs/path.csv", b"from_account_id,to_account_id,amount,currency,reference\n,{b},1.00,USD,ok\n"),
        ("nul.csv", b"from_account_id,to_account_id,amount,currency,reference\n,{b},1.00,USD,o\x00k\n"),
    ],
)
def test_batch_files_with_formula_cells_or_hostile_names_are_refused(client, world, filename, content):
    import io

    before = _recorded()
    response = client.post(
        f"{API}/batches",
        data={"file": (io.BytesIO(content.replace(b"{b}", str(world["b"]).encode())), filename)},
        content_type="multipart/form-data",
        headers=world["admin"].headers,
    )
    failures: list[str] = []
    _assert_refused(response, filename, failures)
    assert not failures, failures
    assert _recorded() == before
