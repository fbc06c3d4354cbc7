"""tanpu rewards list|create|redeem and tanpu retire, as tables and as JSON."""

from __future__ import annotations

import json

from registry import accounts, ledger
from tests.registry.test_cli import run

from .test_rewards import world  # noqa: F401 - the fixture


def test_rewards_and_retire_commands(world):  # noqa: F811
    reg, _ref, account = world  # 1,000 points, 10 g
    url = reg.db.url
    out = run(url, "rewards", "create", "--name", "公交券", "--name-en", "Bus voucher",
              "--price", "300", "--stock", "2", "--period", "week", "--json")
    assert out.exit_code == 0, out.output
    reward = json.loads(out.output)["items"][0]
    assert (reward["price_points"], reward["stock_left"], reward["period"]) == (300, 2, "week")
    out = run(url, "rewards", "list")
    assert out.exit_code == 0 and "Bus voucher" in out.output
    out = run(url, "rewards", "redeem", str(account), str(reward["id"]), "--key", "k1")
    assert out.exit_code == 0 and "balance 700" in out.output, out.output
    out = run(url, "rewards", "redeem", str(account), str(reward["id"]), "--key", "k1")
    assert "(replayed)" in out.output and "balance 700" in out.output
    run(url, "rewards", "redeem", str(account), str(reward["id"]), "--key", "k2")
    out = run(url, "rewards", "redeem", str(account), str(reward["id"]), "--key", "k3")
    assert out.exit_code == 1 and "sold out" in out.output

    out = run(url, "retire", str(account), "--kg", "0.0025", "--purpose", "碳中和", "--json")
    assert out.exit_code == 0, out.output
    cert = json.loads(out.output)
    assert cert["verified"] and cert["reduction_mg"] == 2_500 and len(cert["credits"]) == 3
    out = run(url, "retire", str(account), "--mg", "1000", "--purpose", "x")
    assert out.exit_code == 0 and "certificate" in out.output and "digest" in out.output
    out = run(url, "retire", str(account), "--kg", "1", "--purpose", "x")
    assert out.exit_code == 1 and "6500 mg" in out.output
    out = run(url, "retire", str(account), "--purpose", "x")
    assert out.exit_code == 1 and "give the amount" in out.output
    with reg.db.read() as s:
        assert accounts.get(s, account).status == "active"
        assert len(ledger.entries_of_account(s, str(account))) == 10
