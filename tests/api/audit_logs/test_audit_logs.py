"""GET /admin/audit-logs: admin only, newest first, entity filters, cursor pages."""

from __future__ import annotations

import uuid

from tests.fixtures.http import all_pages, assert_error

AUDIT = "/api/v1/admin/audit-logs"


def _all(client, user, query: str) -> tuple[list[dict], int]:
    return all_pages(client, user, AUDIT, query)


def test_only_admins_read_the_audit_log(client, make):
    for role in ("customer", "finance"):
        assert_error(client.get(AUDIT, headers=make.user(role).headers), 403, "forbidden")
    assert_error(client.get(AUDIT), 401, "unauthorized")
    assert client.get(AUDIT, headers=make.user("admin").headers).status_code == 200


def test_audit_rows_newest_first_with_every_field(client, make):
    alice = make.user()
    account = make.account(alice)
    admin = make.user("admin")

    response = client.get(AUDIT, headers=admin.headers)

    assert response.status_code == 200
    items = response.json["items"]
    assert items and response.json["next_cursor"] is None
    assert set(items[0]) == {
        "id", "actor_id", "action", "entity_type", "entity_id", "data", "request_id", "created_at",
    }  # fmt: skip
    ids = [i["id"] for i in items]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    opened = [i for i in items if i["entity_type"] == "account" and i["entity_id"] == str(account)]
    assert len(opened) == 1
    assert opened[0]["actor_id"] == str(alice.id) and isinstance(opened[0]["data"], dict)
    assert opened[0]["created_at"].endswith("+00:00")


def test_filters_by_entity_type_and_id(client, make):
    alice, bob = make.user(), make.user()
    a, b = make.account(alice), make.account(bob)
    admin = make.user("admin")
    account_rows = client.get(f"{AUDIT}?entity_type=account&limit=200", headers=admin.headers).json["items"]
    assert {i["entity_id"] for i in account_rows} >= {str(a), str(b)}
    assert {i["entity_type"] for i in account_rows} == {"account"}

    only_a = client.get(f"{AUDIT}?entity_type=account&entity_id={a}", headers=admin.headers).json["items"]
    assert only_a and {(i["entity_type"], i["entity_id"]) for i in only_a} == {("account", str(a))}
    by_id = client.get(f"{AUDIT}?entity_id={b}", headers=admin.headers).json["items"]
    assert by_id and {i["entity_id"] for i in by_id} == {str(b)}

    nothing = client.get(f"{AUDIT}?entity_id={uuid.uuid4()}", headers=admin.headers).json
    assert nothing == {"items": [], "next_cursor": None}
    assert client.get(f"{AUDIT}?entity_type=user&entity_id={a}", headers=admin.headers).json["items"] == []


def test_cursor_pages_have_no_gaps_or_repeats(client, make):
    owner = make.user()
    for _ in range(7):
        make.account(owner)
    admin = make.user("admin")
    everything = client.get(f"{AUDIT}?limit=200", headers=admin.headers).json["items"]
    assert len(everything) >= 8

    items, pages = _all(client, admin, "limit=3")
    assert items == everything and pages == -(-len(everything) // 3)

    accounts, pages = _all(client, admin, "entity_type=account&limit=2")
    assert len(accounts) == 7 and pages == 4
    assert [i["id"] for i in accounts] == sorted((i["id"] for i in accounts), reverse=True)


def test_bad_paging_arguments(client, make):
    admin = make.user("admin")
    for query in ("cursor=not-a-cursor", "limit=0", "limit=x", f"entity_type={'x' * 33}"):
        assert_error(client.get(f"{AUDIT}?{query}", headers=admin.headers), 422, "validation_error")
