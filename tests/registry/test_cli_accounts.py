"""tanpu accounts create|show|list|freeze|unfreeze|close|link, as tables and as JSON."""

from __future__ import annotations

import json

from registry import audit
from tests.registry.test_cli import run


def test_accounts_commands(reg):
    url = reg.db.url
    out = run(url, "accounts", "create", "region", "--name", "衢州市", "--domain", "transport",
              "--domain", "energy", "--json")
    assert out.exit_code == 0, out.output
    region = json.loads(out.output)
    assert (region["kind"], region["domains"], region["status"]) == (
        "region", ["energy", "transport"], "active")
    out = run(url, "accounts", "create", "unit", "--parent", str(region["id"]), "--name", "Bus")
    assert out.exit_code == 0 and "unit" in out.output and "Bus" in out.output
    unit = json.loads(run(url, "accounts", "list", "--kind", "unit", "--json").output)["items"][0]
    assert unit["parent"] == region["id"]
    out = run(url, "accounts", "create", "region", "--parent", str(unit["id"]))
    assert out.exit_code == 1 and "can be under" in out.output

    out = run(url, "accounts", "link", str(unit["id"]), "--integrator", "integrator@tanpu.test",
              "--external-id", "depot-1")
    assert out.exit_code == 0 and "depot-1 -> account" in out.output, out.output
    out = run(url, "accounts", "link", str(unit["id"]), "--integrator", "nobody@tanpu.test",
              "--external-id", "x")
    assert out.exit_code == 1 and "no user" in out.output

    out = run(url, "accounts", "show", str(unit["id"]))
    assert out.exit_code == 0, out.output
    assert f"hierarchy  {region['id']} > {unit['id']}" in out.output
    assert "integrator@tanpu.test  depot-1" in out.output and "subtree" in out.output
    shown = json.loads(run(url, "accounts", "show", str(unit["id"]), "--json").output)
    assert shown["identities"] == [{"integrator": "integrator@tanpu.test",
                                    "external_id": "depot-1"}]
    assert shown["balance"]["subtree"]["entries"] == 0 and shown["parents"] == [region["id"]]

    for command, status in (("freeze", "frozen"), ("unfreeze", "active"), ("close", "closed")):
        out = run(url, "accounts", command, str(unit["id"]), "--json")
        assert out.exit_code == 0 and json.loads(out.output)["status"] == status
    out = run(url, "accounts", "unfreeze", str(unit["id"]))
    assert out.exit_code == 1 and "final" in out.output
    listing = run(url, "accounts", "list")
    assert listing.exit_code == 0 and "page 1 of 1: 2 account(s)" in listing.output
    assert "closed" in listing.output and "衢州市" in listing.output
    assert "no account 999" in run(url, "accounts", "show", "999").output
    with reg.db.read() as s:
        entries = audit.entries_for(s, "account", unit["id"])
        assert [e.action for e in entries] == ["account.create", "account.link"] + [
            "account.set_status"] * 3
        assert all(e.actor_id is None for e in entries) and audit.verify(s).ok
