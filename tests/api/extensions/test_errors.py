"""Every error code of API.md's table that the auth, account and transaction endpoints
can produce, always in the one envelope, with a request id and never a stack trace."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from db.core.config import Settings, get_settings
from tests.fixtures.http import assert_error, credit, transfer
from tests.fixtures.infra import closed_port
from tests.fixtures.ledger import apply_now, balance, sql
from tests.fixtures.scheduling import wait_until
from tests.fixtures.tokens import claims, unsigned

TRANSFER = "/api/v1/transactions/transfer"


def _transactions_recorded() -> int:
    return sql("SELECT count(*) FROM transactions")[0][0]


@pytest.fixture
def alice(make):
    return make.user()


@pytest.fixture
def accounts(make, alice):
    bob = make.user()
    return make.account(alice, balance="100.00"), make.account(bob)


@pytest.fixture
def own_accounts(make, alice):
    """Two unfunded accounts of alice: enough for requests refused before any balance matters."""
    return make.account(alice), make.account(alice)


# --- 400 invalid_json -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ('{"amount": "10.00",', "application/json"),
        ("not json at all", "application/json"),
        ('{"amount": "10.00"}', "text/plain"),
        ("amount=10.00&currency=USD", "application/x-www-form-urlencoded"),
    ],
    ids=["truncated_json", "garbage_json", "text_plain", "form_encoded"],
)
def test_unparseable_body_or_wrong_content_type_is_400_invalid_json(client, alice, data, content_type):
    response = client.post(TRANSFER, data=data, content_type=content_type, headers=alice.headers)
    assert_error(response, 400, "invalid_json")
    assert _transactions_recorded() == 0


def test_unparseable_body_on_an_open_endpoint_is_400_invalid_json(client):
    response = client.post("/api/v1/auth/register", data="{", content_type="application/json")
    assert_error(response, 400, "invalid_json")


# --- 401 unauthorized -----------------------------------------------------------------


def test_bad_or_missing_token_is_401_unauthorized(client, alice, own_accounts):
    secret = get_settings().jwt_secret
    past = datetime.now(UTC) - timedelta(hours=1)
    authorizations = {
        "no_token": None,
        "empty_bearer": "Bearer",
        "garbage": "Bearer garbage.token.here",
        "basic_auth": "Basic dXNlcjpwYXNz",
        "expired": jwt.encode(claims(alice.id, iat=past, nbf=past, exp=past), secret, "HS256"),
        "signed_with_another_key": jwt.encode(
            claims(alice.id), "another-secret-of-at-least-32-bytes!", "HS256"
        ),
        "alg_none": unsigned(claims(alice.id)),
        "refresh_type_as_access": jwt.encode(claims(alice.id, typ="refresh"), secret, "HS256"),
        "wrong_audience": jwt.encode(claims(alice.id, aud="someone-else"), secret, "HS256"),
        "unknown_user": jwt.encode(claims(uuid.uuid4()), secret, "HS256"),
    }
    a, b = own_accounts
    body = {"from_account_id": str(a), "to_account_id": str(b), "amount": "1.00", "currency": "USD"}
    outcomes = {}
    for name, value in authorizations.items():
        if value and not value.startswith(("Bearer", "Basic")):
            value = f"Bearer {value}"
        headers = {"Authorization": value} if value else {}
        for response in (
            client.get("/api/v1/auth/me", headers=headers),
            client.get(f"/api/v1/accounts/{a}", headers=headers),
            client.post(TRANSFER, json=body, headers=headers),
        ):
            outcomes[name] = assert_error(response, 401, "unauthorized")["code"]

    assert outcomes == dict.fromkeys(authorizations, "unauthorized")
    assert client.get("/api/v1/auth/me", headers=alice.headers).status_code == 200  # the real token works
    assert _transactions_recorded() == 0


def test_deactivated_users_token_is_401(client, alice):
    assert client.get("/api/v1/auth/me", headers=alice.headers).status_code == 200
    sql("UPDATE users SET is_active = false WHERE id = :id", id=str(alice.id))
    # Plain SQL, not through this process: its auth cache drops alice when the commit's
    # NOTIFY arrives, a few ms later (deployment/AUTH.md "How fast, exactly"; the
    # mechanism is tested in tests/api/auth/test_auth_states.py).
    wait_until(lambda: client.get("/api/v1/auth/me", headers=alice.headers).status_code == 401, timeout=5)
    assert_error(client.get("/api/v1/auth/me", headers=alice.headers), 401, "unauthorized")


# --- 403, 404, 409 ----------------------------------------------------------------------


def test_customer_calling_credit_is_403_forbidden(client, alice, accounts):
    a, _ = accounts
    response = client.post(
        "/api/v1/transactions/credit",
        json={"account_id": str(a), "amount": "1000.00", "currency": "USD"},
        headers=alice.headers,
    )
    assert_error(response, 403, "forbidden")
    assert balance(a) == "100.00"
    assert _transactions_recorded() == 1


def test_unknown_account_is_404_not_found(client, alice, accounts):
    a, _ = accounts
    assert_error(client.get(f"/api/v1/accounts/{uuid.uuid4()}", headers=alice.headers), 404, "not_found")
    assert_error(transfer(client, alice, a, uuid.uuid4(), "1.00"), 404, "not_found")
    assert_error(transfer(client, alice, uuid.uuid4(), a, "1.00"), 404, "not_found")
    assert_error(client.get(f"/api/v1/transactions/{uuid.uuid4()}", headers=alice.headers), 404, "not_found")
    assert_error(client.get("/api/v1/no-such-endpoint", headers=alice.headers), 404, "not_found")
    assert _transactions_recorded() == 1


def test_someone_elses_account_or_transaction_is_404_not_403(client, make, alice, accounts):
    a, b = accounts
    mallory = make.user()
    m = make.account(mallory, balance="5.00")
    tx = transfer(client, alice, a, b, "1.00").json["id"]

    assert_error(client.get(f"/api/v1/accounts/{a}", headers=mallory.headers), 404, "not_found")
    assert_error(client.get(f"/api/v1/accounts/{a}/entries", headers=mallory.headers), 404, "not_found")
    assert_error(
        client.get(f"/api/v1/balances/current?account_id={a}", headers=mallory.headers), 404, "not_found"
    )
    assert_error(client.get(f"/api/v1/transactions/{tx}", headers=mallory.headers), 404, "not_found")
    # Spending from someone else's account is the same 404: no hint that it exists.
    assert_error(transfer(client, mallory, a, m, "1.00"), 404, "not_found")
    assert _transactions_recorded() == 3  # two fundings and alice's transfer
    assert balance(a) == "100.00"


def test_registering_a_taken_username_or_email_is_409_conflict(client):
    first = {"username": "dora", "email": "dora@example.com", "password": "long enough password"}
    assert client.post("/api/v1/auth/register", json=first).status_code == 201

    same_name = client.post("/api/v1/auth/register", json={**first, "email": "other@example.com"})
    same_email = client.post("/api/v1/auth/register", json={**first, "username": "DORA2"})
    same_name_other_case = client.post(
        "/api/v1/auth/register", json={**first, "username": "DORA", "email": "x@example.com"}
    )

    # Self-registration names neither field (tests/api/auth/test_registration.py).
    assert assert_error(same_name, 409, "conflict")["details"] == {}
    assert assert_error(same_email, 409, "conflict")["details"] == {}
    assert_error(same_name_other_case, 409, "conflict")
    assert sql("SELECT count(*) FROM users")[0][0] == 1


# --- 413 -------------------------------------------------------------------------------


def test_body_over_the_limit_is_413_payload_too_large(client, app, alice, accounts):
    a, b = accounts
    limit = app.config["MAX_CONTENT_LENGTH"]
    assert limit == get_settings().max_content_length
    padding = "x" * limit
    body = {"from_account_id": str(a), "to_account_id": str(b), "amount": "1.00", "currency": "USD"}

    response = client.post(TRANSFER, json={**body, "reference": padding}, headers=alice.headers)
    assert_error(response, 413, "payload_too_large")
    register = client.post(
        "/api/v1/auth/register", json={"username": "big", "email": "b@example.com", "password": padding}
    )
    assert_error(register, 413, "payload_too_large")
    assert _transactions_recorded() == 1


# --- 422 ---------------------------------------------------------------------------------


MISSING = object()
INVALID_FIELDS = {
    "json_number_float": ({"amount": 10.5}, "amount"),
    "json_number_int": ({"amount": 10}, "amount"),
    "too_many_decimals": ({"amount": "10.005"}, "amount"),
    "zero": ({"amount": "0"}, "amount"),
    "zero_with_decimals": ({"amount": "0.00"}, "amount"),
    "negative": ({"amount": "-5.00"}, "amount"),
    "exponent": ({"amount": "1e3"}, "amount"),
    "leading_space": ({"amount": " 10.00"}, "amount"),
    "thousands_separator": ({"amount": "1,000.00"}, "amount"),
    "plus_sign": ({"amount": "+10.00"}, "amount"),
    "trailing_dot": ({"amount": "10."}, "amount"),
    "nan": ({"amount": "NaN"}, "amount"),
    "over_the_maximum": ({"amount": "1000000000.01"}, "amount"),
    "null_amount": ({"amount": None}, "amount"),
    "unknown_currency": ({"currency": "XYZ"}, "currency"),
    "lowercase_currency": ({"currency": "usd"}, "currency"),
    "bad_uuid": ({"from_account_id": "not-a-uuid"}, "from_account_id"),
    "unknown_field": ({"nickname": "unknown field"}, "nickname"),
    "missing_amount": ({"amount": MISSING}, "amount"),
    "missing_to_account": ({"to_account_id": MISSING}, "to_account_id"),
    "missing_currency": ({"currency": MISSING}, "currency"),
}


def test_invalid_field_is_422_validation_error_with_field_details(client, alice, own_accounts):
    a, b = own_accounts
    valid = {"from_account_id": str(a), "to_account_id": str(b), "amount": "10.00", "currency": "USD"}
    outcomes, expected = {}, {}
    for name, (change, field) in INVALID_FIELDS.items():
        body = {k: v for k, v in {**valid, **change}.items() if v is not MISSING}
        error = assert_error(client.post(TRANSFER, json=body, headers=alice.headers), 422, "validation_error")
        assert all(isinstance(m, str) and m for m in error["details"].get(field, [None])), (name, error)
        outcomes[name] = sorted(error["details"])
        expected[name] = [field]

    assert outcomes == expected
    assert _transactions_recorded() == 0


def test_jpy_amount_with_decimals_is_422(client, make, alice):
    jp_a, jp_b = make.account(alice, "JPY", balance="500"), make.account(make.user(), "JPY")
    error = assert_error(transfer(client, alice, jp_a, jp_b, "1.5", "JPY"), 422, "validation_error")
    assert list(error["details"]) == ["amount"]


def test_accounts_in_another_currency_is_422_currency_mismatch(client, make, alice, accounts):
    a, b = accounts
    euro = make.account(make.user(), "EUR")

    assert_error(transfer(client, alice, a, euro, "1.00", "USD"), 422, "currency_mismatch")
    assert_error(transfer(client, alice, a, b, "1.00", "EUR"), 422, "currency_mismatch")
    assert _transactions_recorded() == 1


def test_transfer_to_the_same_account_is_422_same_account(client, alice, accounts):
    a, _ = accounts
    assert_error(transfer(client, alice, a, a, "1.00"), 422, "same_account")
    assert _transactions_recorded() == 1


@pytest.mark.parametrize("frozen", ["source", "target"])
def test_frozen_account_is_422_account_inactive(client, alice, accounts, frozen):
    a, b = accounts
    sql("UPDATE accounts SET status = 'frozen' WHERE id = :id", id=str(a if frozen == "source" else b))
    assert_error(transfer(client, alice, a, b, "1.00"), 422, "account_inactive")
    assert _transactions_recorded() == 1
    assert balance(a) == "100.00"


# --- 503 -------------------------------------------------------------------------------


def test_database_unreachable_is_503_unavailable_and_nothing_is_recorded(alice, accounts):
    from api import create_app

    a, b = accounts
    dead_url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/ledgerq"
    app = create_app(Settings(DATABASE_URL=dead_url))
    assert app.config["LEDGERQ_SETTINGS"].database_url == dead_url
    client = app.test_client()

    posted = transfer(client, alice, a, b, "10.00", headers={"Idempotency-Key": "during-outage"})
    read = client.get(f"/api/v1/accounts/{a}", headers=alice.headers)
    registered = client.post(
        "/api/v1/auth/register",
        json={"username": "erin", "email": "erin@example.com", "password": "long enough password"},
    )

    for response in (posted, read, registered):
        assert_error(response, 503, "unavailable")
        assert response.headers.get("Retry-After")
    assert _transactions_recorded() == 1
    assert sql("SELECT count(*) FROM users WHERE username = 'erin'")[0][0] == 0
    assert balance(a) == "100.00"


# --- cross-cutting ---------------------------------------------------------------------


def test_every_response_carries_a_request_id_echoed_when_sent(client, alice, accounts):
    a, b = accounts
    sent = client.get(f"/api/v1/accounts/{a}", headers={**alice.headers, "X-Request-ID": "client-req.42"})
    assert sent.headers["X-Request-ID"] == "client-req.42"
    error = client.get(f"/api/v1/accounts/{uuid.uuid4()}", headers={**alice.headers, "X-Request-ID": "err-1"})
    assert error.headers["X-Request-ID"] == "err-1"
    accepted = transfer(client, alice, a, b, "1.00", headers={"X-Request-ID": "tx-1"})
    assert accepted.status_code == 202 and accepted.headers["X-Request-ID"] == "tx-1"
    # The id reaches the row (and so the worker's log lines).
    assert sql("SELECT request_id FROM transactions WHERE id = :id", id=accepted.json["id"])[0][0] == "tx-1"

    generated = [
        client.get("/healthz"),
        client.get("/api/v1/auth/me"),
        client.post(TRANSFER, data="{", content_type="application/json", headers=alice.headers),
    ]
    ids = [r.headers["X-Request-ID"] for r in generated]
    assert all(uuid.UUID(i) for i in ids) and len(set(ids)) == 3
    # A header that could forge log lines is replaced, not echoed.
    forged = client.get("/healthz", headers={"X-Request-ID": "a b\tlevel=error"})
    assert forged.headers["X-Request-ID"] != "a b\tlevel=error"


def test_amounts_are_rendered_with_the_currencys_decimals(client, make, alice):
    finance = make.user("finance")
    usd, jpy, kwd = (make.account(alice, c) for c in ("USD", "JPY", "KWD"))
    for account, amount, currency in ((usd, "100", "USD"), (jpy, "500", "JPY"), (kwd, "1.25", "KWD")):
        response = credit(client, finance, account, amount, currency)
        assert response.status_code == 202, response.json
        rendered = {"USD": "100.00", "JPY": "500", "KWD": "1.250"}[currency]
        assert response.json["amount"] == rendered
        assert apply_now(response.json["id"]) == "completed"

    shown = {
        item["currency"]: item["balance"]
        for item in client.get("/api/v1/accounts", headers=alice.headers).json["items"]
    }
    assert shown == {"USD": "100.00", "JPY": "500", "KWD": "1.250"}
    entries = client.get(f"/api/v1/accounts/{kwd}/entries", headers=alice.headers).json["items"]
    assert [(e["amount"], e["balance_after"]) for e in entries] == [("1.250", "1.250")]


def test_request_time_errors_do_not_echo_what_the_caller_may_not_read(client, make, alice, accounts):
    a, b = accounts
    stranger = make.user()
    euro = make.account(stranger, "EUR")
    assert client.get(f"/api/v1/accounts/{euro}", headers=alice.headers).status_code == 404

    mismatch = transfer(client, alice, a, euro, "1.00", "USD")
    assert_error(mismatch, 422, "currency_mismatch")
    assert "EUR" not in mismatch.get_data(as_text=True)
    assert mismatch.json["error"]["details"] == {"accounts": {str(a): "USD"}}  # her own, only

    sql("UPDATE accounts SET status = 'frozen' WHERE id = :id", id=str(b))
    inactive = transfer(client, alice, a, b, "1.00")
    assert_error(inactive, 422, "account_inactive")
    assert "frozen" not in inactive.get_data(as_text=True) and str(b) not in inactive.json["error"]["message"]
    assert _transactions_recorded() == 1

    finance = make.user("finance")  # staff read every account: the full answer
    staff = transfer(client, finance, a, euro, "1.00", "USD")
    assert staff.json["error"]["details"]["accounts"][str(euro)] == "EUR"
