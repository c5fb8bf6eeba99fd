"""User management: admins manage everyone; others see and edit only themselves."""

from __future__ import annotations

import uuid

from db.models import Account, LedgerEntry, User
from db.session import unit_of_work
from tests.fixtures.http import bearer, login, refresh
from tests.fixtures.ledger import audit_events, row


def _db_user(user_id) -> User:
    return row(User, user_id)


def test_admin_lists_users_page_by_page(client, make):
    admin = make.user("admin")
    created = {str(make.user().id) for _ in range(4)} | {str(admin.id)}

    seen, cursor = [], None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/api/v1/users?{query}", headers=admin.headers)
        assert page.status_code == 200
        assert len(page.json["items"]) <= 2
        seen += [item["id"] for item in page.json["items"]]
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    assert set(seen) == created and len(seen) == len(created)
    assert all("password_hash" not in item for item in page.json["items"])


def test_admin_filters_users_by_role(client, make):
    admin, finance = make.user("admin"), make.user("finance")
    make.user()
    page = client.get("/api/v1/users?role=finance", headers=admin.headers)
    assert [item["id"] for item in page.json["items"]] == [str(finance.id)]


def test_only_admins_list_users(client, make):
    for role in ("customer", "finance"):
        response = client.get("/api/v1/users", headers=make.user(role).headers)
        assert response.status_code == 403
        assert response.json["error"]["code"] == "forbidden"


def test_users_see_themselves_and_nobody_else(client, make):
    alice, bob, admin = make.user(), make.user(), make.user("admin")
    own = client.get(f"/api/v1/users/{alice.id}", headers=alice.headers)
    assert own.status_code == 200
    assert set(own.json) == {"id", "username", "email", "role", "is_active", "created_at", "updated_at"}
    assert client.get(f"/api/v1/users/{bob.id}", headers=alice.headers).status_code == 404
    assert client.get(f"/api/v1/users/{uuid.uuid4()}", headers=alice.headers).status_code == 404
    assert client.get(f"/api/v1/users/{alice.id}", headers=admin.headers).status_code == 200
    finance = make.user("finance")
    assert client.get(f"/api/v1/users/{alice.id}", headers=finance.headers).status_code == 404


def test_customer_changes_own_email(client, make):
    alice = make.user()
    response = client.put(
        f"/api/v1/users/{alice.id}", json={"email": "new@example.com"}, headers=alice.headers
    )
    assert response.status_code == 200
    assert response.json["email"] == "new@example.com"
    assert ("user.email_changed", {}) in audit_events(alice.id)


def test_email_clash_is_a_conflict(client, make):
    alice, bob = make.user(), make.user()
    response = client.put(
        f"/api/v1/users/{alice.id}", json={"email": f"{bob.username}@EXAMPLE.com"}, headers=alice.headers
    )
    assert response.status_code == 409
    assert response.json["error"]["details"] == {"email": ["already registered"]}


def test_customer_cannot_mass_assign_role_active_or_id(client, make):
    alice = make.user()
    for body in ({"role": "admin"}, {"is_active": False}, {"id": str(uuid.uuid4())}, {"role": "customer"}):
        response = client.put(
            f"/api/v1/users/{alice.id}", json={"email": "x@example.com", **body}, headers=alice.headers
        )
        assert response.status_code == 403, body
        assert response.json["error"]["code"] == "forbidden"
    user = _db_user(alice.id)
    assert (user.role, user.is_active, user.email) == ("customer", True, f"{alice.username}@example.com")


def test_unknown_fields_are_refused(client, make):
    alice = make.user()
    response = client.put(f"/api/v1/users/{alice.id}", json={"username": "renamed"}, headers=alice.headers)
    assert response.status_code == 422
    assert "username" in response.json["error"]["details"]


def test_admin_changes_roles_and_it_takes_effect_at_once(client, make):
    admin, alice = make.user("admin"), make.user()
    assert client.get("/api/v1/users", headers=alice.headers).status_code == 403
    response = client.put(f"/api/v1/users/{alice.id}", json={"role": "admin"}, headers=admin.headers)
    assert response.status_code == 200 and response.json["role"] == "admin"
    # The same (old) access token now carries admin rights: roles are read per request.
    assert client.get("/api/v1/users", headers=alice.headers).status_code == 200
    assert ("user.role_changed", {"from": "customer", "to": "admin"}) in audit_events(alice.id)


def test_admin_cannot_demote_or_deactivate_themselves(client, make):
    admin = make.user("admin")
    for body in ({"role": "customer"}, {"is_active": False}):
        assert client.put(f"/api/v1/users/{admin.id}", json=body, headers=admin.headers).status_code == 409
    assert client.delete(f"/api/v1/users/{admin.id}", headers=admin.headers).status_code == 409
    # Sending the values one already has is not a change.
    same = client.put(
        f"/api/v1/users/{admin.id}", json={"role": "admin", "is_active": True}, headers=admin.headers
    )
    assert same.status_code == 200


def test_admin_id_in_body_must_match(client, make):
    admin, alice = make.user("admin"), make.user()
    other = client.put(f"/api/v1/users/{alice.id}", json={"id": str(uuid.uuid4())}, headers=admin.headers)
    assert other.status_code == 422 and "id" in other.json["error"]["details"]
    same = client.put(f"/api/v1/users/{alice.id}", json={"id": str(alice.id)}, headers=admin.headers)
    assert same.status_code == 200


def test_changing_own_password_needs_the_current_one(client, make):
    alice = make.user()
    missing = client.put(
        f"/api/v1/users/{alice.id}", json={"password": "a brand new secret"}, headers=alice.headers
    )
    assert missing.status_code == 422 and "current_password" in missing.json["error"]["details"]

    wrong = client.put(
        f"/api/v1/users/{alice.id}",
        json={
            "password": "a brand new secret",
            "current_password": "not my password",
            "email": "z@example.com",
        },
        headers=alice.headers,
    )
    assert wrong.status_code == 422
    assert wrong.json["error"]["details"] == {"current_password": ["is incorrect"]}
    assert _db_user(alice.id).email == f"{alice.username}@example.com"  # nothing else changed
    assert ("user.password_change_failed", {"reason": "current_password_incorrect"}) in audit_events(alice.id)
    login(client, alice.username, alice.password)  # the old password still works


def test_password_change_revokes_every_token_and_is_audited(client, make):
    alice = make.user()
    tokens = login(client, alice.username)
    response = client.put(
        f"/api/v1/users/{alice.id}",
        json={"password": "a brand new secret", "current_password": alice.password},
        headers=bearer(tokens["access_token"]),
    )
    assert response.status_code == 200
    assert client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).status_code == 401
    assert client.get("/api/v1/auth/me", headers=alice.headers).status_code == 401
    assert refresh(client, tokens["refresh_token"]).status_code == 401
    old = client.post("/api/v1/auth/login", json={"username": alice.username, "password": alice.password})
    assert old.status_code == 401
    login(client, alice.username, "a brand new secret")
    assert ("user.password_changed", {"by_admin": False}) in audit_events(alice.id)


def test_admin_resets_a_password_without_the_current_one(client, make):
    admin, alice = make.user("admin"), make.user()
    response = client.put(
        f"/api/v1/users/{alice.id}", json={"password": "reset by the admin"}, headers=admin.headers
    )
    assert response.status_code == 200
    login(client, alice.username, "reset by the admin")
    assert ("user.password_changed", {"by_admin": True}) in audit_events(alice.id)


def test_new_passwords_need_twelve_characters(client, make):
    alice = make.user()
    response = client.put(
        f"/api/v1/users/{alice.id}",
        json={"password": "too short", "current_password": alice.password},
        headers=alice.headers,
    )
    assert response.status_code == 422 and "password" in response.json["error"]["details"]


def test_delete_deactivates_and_keeps_the_ledger(client, make):
    admin, alice = make.user("admin"), make.user()
    account_id = make.account(alice, balance="10.00")

    assert client.delete(f"/api/v1/users/{alice.id}", headers=admin.headers).status_code == 204
    shown = client.get(f"/api/v1/users/{alice.id}", headers=admin.headers).json
    assert shown["is_active"] is False
    with unit_of_work() as uow:
        assert uow.session.get(Account, account_id) is not None
        assert uow.session.query(LedgerEntry).filter_by(account_id=account_id).count() == 1
    assert ("user.deactivated", {}) in audit_events(alice.id)
    # Idempotent.
    assert client.delete(f"/api/v1/users/{alice.id}", headers=admin.headers).status_code == 204


def test_only_admins_delete_users(client, make):
    alice, bob = make.user(), make.user()
    assert client.delete(f"/api/v1/users/{bob.id}", headers=alice.headers).status_code == 403
    assert client.delete(f"/api/v1/users/{alice.id}", headers=alice.headers).status_code == 403
    admin = make.user("admin")
    assert client.delete(f"/api/v1/users/{uuid.uuid4()}", headers=admin.headers).status_code == 404


def test_deactivating_a_user_stops_their_transfers_and_standing_orders_audited(client, make):
    from tests.fixtures.http import transfer
    from tests.fixtures.ledger import audit_actions, balance, transaction
    from tests.fixtures.scheduling import iso, later
    from workers.transactions import apply_transaction as apply_actor

    admin, alice, bob = make.user("admin"), make.user(), make.user()
    a, b = make.account(alice, balance="10.00"), make.account(bob)
    scheduled = transfer(client, alice, a, b, scheduled_for=iso(later(seconds=30))).json
    pending = transfer(client, alice, a, b).json  # its message still waiting in Redis
    order = client.post(
        "/api/v1/schedules",
        json={
            "from_account_id": str(a),
            "to_account_id": str(b),
            "amount": "1.00",
            "currency": "USD",
            "interval_seconds": 60,
        },
        headers=alice.headers,
    ).json

    assert client.delete(f"/api/v1/users/{alice.id}", headers=admin.headers).status_code == 204

    apply_actor(pending["id"])  # delivered after all: moves nothing
    for tx_id in (scheduled["id"], pending["id"]):
        assert transaction(tx_id).status == "cancelled"
        assert "transaction.cancelled" in audit_actions(tx_id)
    assert balance(b) == "0.00"
    shown = client.get(f"/api/v1/schedules/{order['id']}", headers=admin.headers).json
    assert shown["status"] == "paused" and shown["next_run_at"] is None
    assert "schedule.paused" in audit_actions(order["id"])
