"""Carbon accounts: the hierarchy's rules (kinds, no cycles), statuses (closed is final),
integrators' identities (unique per integrator, several integrators per account), who may
do what, `resolve` (also two transactions racing on PostgreSQL), every change audited,
and balances rolled up a tree from the ledger's entries (also over 20k accounts; bench/bench_accounts.py times 1M)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa

from registry import accounts, audit, users
from registry.errors import Conflict, Forbidden, Invalid, InvalidTransition, NotFound
from registry.models import PARENT_KINDS
from registry.models import (Account, AccountAncestor, AccountIdentity, AuditEntry, CreditBatch,
                             CreditEntry)
from tests.registry.helpers import METHODOLOGY

NOW = dt.datetime(2024, 5, 20, tzinfo=dt.timezone.utc)


def make(reg, kind, parent=None, actor=None, **kw):
    with reg.uow() as s:
        return accounts.create(s, reg.admin if actor is None else actor, kind,
                               parent_id=parent, **kw).id


def second_integrator(reg) -> int:
    with reg.uow() as s:
        return users.create_user(s, reg.admin, email="bikes@tanpu.test", name="Bikes",
                                 roles=["integrator"]).id


def actions(reg, account_id) -> list[str]:
    with reg.db.read() as s:
        return [e.action for e in audit.entries_for(s, "account", account_id)]


def put_entries(reg, rows) -> dict[str, str]:
    """Ledger entries (account id, methodology label, mg, points, bonus) written as the
    ledger writes them (account = str(platform id)); label "a" is test.transit, any other
    label a methodology of its own, each published. Returns label → methodology id."""
    ids = {label: METHODOLOGY if label == "a" else f"test.{label}"
           for label in sorted({row[1] for row in rows})}
    versions = {label: reg.version(reg.to_state("published", methodology_id=methodology_id))
                for label, methodology_id in ids.items()}
    with reg.db.engine.begin() as c:
        for label, methodology_id in ids.items():
            v = versions[label]
            batch = c.execute(sa.insert(CreditBatch.__table__).returning(CreditBatch.__table__.c.id),
                              {"idempotency_key": f"k-{label}", "request_digest": "d",
                               "actor_id": reg.integrator, "methodology_id": methodology_id,
                               "version": v.version, "content_hash": v.content_hash,
                               "created_at": NOW}).scalar_one()
            c.execute(sa.insert(CreditEntry.__table__), [
                {"batch_id": batch, "integrator_id": reg.integrator, "account": str(account), "methodology_id": methodology_id,
                 "version": v.version, "content_hash": v.content_hash, "record_id": f"r{n}",
                 "activity_time": NOW, "reduction_mg": mg, "points": points, "bonus": bonus,
                 "status": "credited", "reason": "", "credited_at": NOW}
                for n, (account, lab, mg, points, bonus) in enumerate(rows) if lab == label])
    return ids


# ---------------------------------------------------------------- hierarchy
def test_kinds_go_under_the_parents_the_rules_allow(reg):
    region = make(reg, "region", name="Quzhou", domains=["transport", "energy"])
    county = make(reg, "region", region, name="Kecheng")
    unit = make(reg, "unit", county, name="Bus company")
    project = make(reg, "project", unit)
    person = make(reg, "individual", unit)
    make(reg, "individual", region)
    make(reg, "project", region)
    make(reg, "individual")  # nothing above it
    for kind, parent in [("individual", person), ("individual", project), ("unit", unit),
                         ("project", person), ("region", unit), ("unit", person)]:
        with reg.uow() as s, pytest.raises(Invalid, match="can be under"):
            accounts.create(s, reg.admin, kind, parent_id=parent)
    with reg.uow() as s, pytest.raises(Invalid, match="unknown kind"):
        accounts.create(s, reg.admin, "household")
    with reg.uow() as s, pytest.raises(Invalid, match="unknown domain"):
        accounts.create(s, reg.admin, "unit", domains=["waste"])
    with reg.uow() as s, pytest.raises(NotFound):
        accounts.create(s, reg.admin, "unit", parent_id=999_999)
    with reg.db.read() as s:
        a = accounts.get(s, region)
        assert (a.kind, a.name, a.domains, a.status) == ("region", "Quzhou",
                                                         ["energy", "transport"], "active")
        assert [x.id for x in accounts.ancestors(s, person)] == [region, county, unit]
        assert accounts.descendants(s, county) == sorted([unit, project, person])
        assert accounts.children_count(s, unit) == 2
    # moving: the same rules
    with reg.uow() as s:
        accounts.set_parent(s, reg.admin, person, region)
        with pytest.raises(Invalid, match="can be under"):
            accounts.set_parent(s, reg.admin, unit, unit)
    with reg.uow() as s, pytest.raises(Invalid, match="can be under"):
        accounts.set_parent(s, reg.admin, person, project)
    assert actions(reg, person) == ["account.create", "account.set_parent"]


def test_a_region_cannot_go_below_itself(reg):
    top = make(reg, "region")
    middle = make(reg, "region", top)
    bottom = make(reg, "region", middle)
    for parent in (top, middle, bottom):
        with reg.uow() as s, pytest.raises(Invalid, match="cannot be under itself"):
            accounts.set_parent(s, reg.admin, top, parent)
    with reg.uow() as s, pytest.raises(Invalid, match="cannot be under itself"):
        accounts.set_parent(s, reg.admin, middle, bottom)
    with reg.uow() as s:  # the other way round is fine
        accounts.set_parent(s, reg.admin, bottom, None)
        accounts.set_parent(s, reg.admin, top, bottom)
    with reg.db.read() as s:
        assert accounts.descendants(s, bottom) == [top, middle]
        assert [a.id for a in accounts.ancestors(s, middle)] == [bottom, top]
    # the database refuses a row that is its own parent even without the code
    with pytest.raises(sa.exc.IntegrityError):
        with reg.db.engine.begin() as c:
            c.execute(sa.text("UPDATE accounts SET parent_id = id WHERE id = :id"), {"id": top})


# ---------------------------------------------------------------- statuses
def test_freeze_unfreeze_close_and_closed_is_final(reg):
    region = make(reg, "region")
    unit = make(reg, "unit")
    with reg.uow() as s:
        assert accounts.update_status(s, reg.admin, unit, "frozen").status == "frozen"
        assert accounts.update_status(s, reg.admin, unit, "frozen").status == "frozen"  # no-op
        accounts.update_status(s, reg.admin, unit, "active")
        accounts.update_status(s, reg.admin, unit, "closed")
    for change in (lambda s: accounts.update_status(s, reg.admin, unit, "active"),
                   lambda s: accounts.set_parent(s, reg.admin, unit, region),
                   lambda s: accounts.update(s, reg.admin, unit, name="new"),
                   lambda s: accounts.link(s, reg.admin, reg.integrator, "x", unit),
                   lambda s: accounts.create(s, reg.admin, "individual", parent_id=unit)):
        with reg.uow() as s, pytest.raises(InvalidTransition, match="closed"):
            change(s)
    with reg.uow() as s, pytest.raises(Invalid, match="unknown status"):
        accounts.update_status(s, reg.admin, region, "deleted")
    with reg.uow() as s:
        accounts.update(s, reg.admin, region, name="Zhangye", domains=["forestry"])
    assert actions(reg, unit) == ["account.create"] + ["account.set_status"] * 3
    assert actions(reg, region) == ["account.create", "account.update"]
    with reg.db.read() as s:
        details = [e.details for e in audit.entries_for(s, "account", unit)][1:]
        assert details == [{"from": "active", "to": "frozen"}, {"from": "frozen", "to": "active"},
                           {"from": "active", "to": "closed"}]
        assert audit.entries_for(s, "account", region)[1].details == {
            "name": {"from": "", "to": "Zhangye"}, "domains": {"from": [], "to": ["forestry"]}}
        assert audit.verify(s).ok


# ---------------------------------------------------------------- identities
def test_identities_are_unique_per_integrator_and_an_account_has_several(reg):
    bikes = second_integrator(reg)
    person = make(reg, "individual", actor=reg.integrator)
    other = make(reg, "individual", actor=reg.integrator)
    with reg.uow() as s:
        accounts.link(s, reg.integrator, reg.integrator, "bus-42", person)
        accounts.link(s, reg.integrator, reg.integrator, "bus-42", person)  # again: nothing
        # the bike operator's id for the same person: an administrator links it
        accounts.link(s, reg.admin, bikes, "bike-7", person)
        # the same id string of another integrator is another identity
        accounts.link(s, reg.admin, bikes, "bus-42", other)
    with reg.uow() as s, pytest.raises(Conflict, match="linked to account"):
        accounts.link(s, reg.integrator, reg.integrator, "bus-42", other)
    with reg.db.read() as s:
        assert [(i.integrator_id, i.external_id) for i in accounts.identities(s, person)] == [
            (reg.integrator, "bus-42"), (bikes, "bike-7")]
        assert [i.external_id for i in accounts.identities(s, person, bikes)] == ["bike-7"]
        assert accounts.resolve(s, bikes, "bike-7", create=False).id == person
        assert accounts.resolve(s, reg.integrator, "bus-42", create=False).id == person
    # the database refuses a second row for a pair, whatever the code does
    with pytest.raises(sa.exc.IntegrityError):
        with reg.db.engine.begin() as c:
            c.execute(sa.insert(AccountIdentity.__table__),
                      {"integrator_id": bikes, "external_id": "bike-7", "account_id": other,
                       "created_at": NOW})
    with reg.uow() as s:
        accounts.unlink(s, reg.admin, bikes, "bike-7")
    with reg.uow() as s, pytest.raises(NotFound):
        accounts.unlink(s, reg.admin, bikes, "bike-7")
    assert actions(reg, person) == ["account.create", "account.link", "account.link",
                                    "account.unlink"]
    with reg.db.read() as s:
        link = audit.entries_for(s, "account", person)[1]
        assert link.actor_id == reg.integrator
        assert link.details == {"integrator_id": reg.integrator, "external_id": "bus-42"}


def test_who_may_do_what(reg):
    bikes = second_integrator(reg)
    mine = make(reg, "unit", actor=reg.integrator)
    theirs = make(reg, "unit", actor=bikes)
    admins = make(reg, "region")
    with reg.uow() as s:  # an integrator links its ids to what it sees
        accounts.link(s, reg.integrator, reg.integrator, "u-1", mine)
        person = accounts.create(s, reg.integrator, "individual", parent_id=mine).id
    with reg.uow() as s:  # ... and an administrator links one to another's account
        accounts.link(s, reg.admin, reg.integrator, "shared", theirs)
    with reg.uow() as s, pytest.raises(Forbidden, match="only its own"):
        accounts.link(s, reg.integrator, bikes, "b-1", mine)
    with reg.uow() as s, pytest.raises(NotFound):  # not seen: not even its existence
        accounts.link(s, reg.integrator, reg.integrator, "r-1", admins)
    with reg.uow() as s, pytest.raises(NotFound):
        accounts.create(s, reg.integrator, "individual", parent_id=admins)
    with reg.uow() as s, pytest.raises(Forbidden, match="needs the integrator or administrator"):
        accounts.create(s, reg.expert, "individual")
    with reg.uow() as s, pytest.raises(Invalid, match="not an active integrator"):
        accounts.link(s, reg.admin, reg.expert, "e-1", admins)
    with reg.db.read() as s:
        integrator = users.get(s, reg.integrator)
        assert accounts.can_view(s, integrator, accounts.get(s, mine))
        assert accounts.can_view(s, integrator, accounts.get(s, theirs))  # it has an id there
        assert not accounts.can_view(s, integrator, accounts.get(s, admins))
        items, total = accounts.list_accounts(s, reg.integrator)
        assert [a.id for a in items] == sorted([mine, theirs, person]) and total == 3
        assert accounts.list_accounts(s, reg.integrator, kind="individual")[0][0].id == person
        assert accounts.list_accounts(s, reg.integrator, parent_id=mine)[1] == 1
        assert accounts.list_accounts(s, reg.admin)[1] == 4
        assert accounts.list_accounts(s, reg.admin, parent_id=0)[1] == 3
    with reg.uow() as s, pytest.raises(Forbidden, match="created"):  # sees, may not change
        accounts.update_status(s, reg.integrator, theirs, "frozen")
    with reg.uow() as s, pytest.raises(Forbidden):
        accounts.list_accounts(s, reg.expert)
    with reg.uow() as s:
        accounts.update_status(s, reg.integrator, mine, "frozen")
        accounts.update(s, reg.integrator, mine, name="Depot", domains=["transport"])


# ---------------------------------------------------------------- resolve
def test_resolve_creates_an_individual_once(reg):
    with reg.uow() as s:
        first = accounts.resolve(s, reg.integrator, "rider-1")
        assert (first.kind, first.parent_id, first.status, first.name, first.created_by) == (
            "individual", None, "active", "", reg.integrator)
    with reg.uow() as s:
        assert accounts.resolve(s, reg.integrator, "rider-1").id == first.id
        with pytest.raises(NotFound):
            accounts.resolve(s, reg.integrator, "rider-2", create=False)
        many = accounts.resolve_many(s, reg.integrator, ["rider-1", "rider-2", "rider-3",
                                                         "rider-2"])
        assert many["rider-1"].id == first.id and len({a.id for a in many.values()}) == 3
    with reg.uow() as s, pytest.raises(Invalid):
        accounts.resolve(s, reg.integrator, "")
    with reg.uow() as s, pytest.raises(Invalid, match="not an active integrator"):
        accounts.resolve(s, reg.expert, "x")
    with reg.db.read() as s:
        made = s.scalars(sa.select(AuditEntry).where(AuditEntry.action == "account.resolve")
                         .order_by(AuditEntry.seq)).all()
        assert [e.details["created"] for e in made] == [
            [[first.id, "rider-1"]],
            [[many["rider-2"].id, "rider-2"], [many["rider-3"].id, "rider-3"]]]
        assert made[0].actor_id == reg.integrator and audit.verify(s).ok


def test_two_concurrent_resolves_of_a_new_id_give_one_account(reg, monkeypatch):
    """Both transactions see the id unknown and create an account; one inserts the
    identity, the other waits for it, finds it and gives its own account up."""
    if reg.db.dialect != "postgresql":
        pytest.skip("SQLite has one writer: its transactions cannot interleave")
    known = accounts._known
    both_looked = threading.Barrier(2, timeout=20)

    def looked_up(session, integrator_id, external_ids):
        found = known(session, integrator_id, external_ids)
        if threading.current_thread().name.startswith("resolver") and not found:
            both_looked.wait()  # both have seen the id unknown before either inserts
        return found
    monkeypatch.setattr(accounts, "_known", looked_up)
    got, errors = {}, []

    def resolver(n):
        try:
            with reg.uow() as s:
                got[n] = accounts.resolve(s, reg.integrator, "rider-race").id
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
    threads = [threading.Thread(target=resolver, args=(n,), name=f"resolver-{n}")
               for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and got[0] == got[1]
    with reg.db.read() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Account)) == 1
        assert accounts.identities(s, got[0])[0].external_id == "rider-race"
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                        .where(AuditEntry.action == "account.resolve")) == 1
        assert audit.verify(s).ok


def test_many_concurrent_batches_resolve_each_id_to_one_account(reg):
    if reg.db.dialect != "postgresql":
        pytest.skip("SQLite has one writer: its transactions cannot interleave")
    ids = [f"rider-{n}" for n in range(40)]
    results, errors = [], []

    def resolver(offset):
        try:
            with reg.uow() as s:
                chosen = ids[offset:] + ids[:offset]
                results.append({e: a.id for e, a in
                                accounts.resolve_many(s, reg.integrator, chosen).items()})
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
    threads = [threading.Thread(target=resolver, args=(n * 5,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and all(r == results[0] for r in results)
    with reg.db.read() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Account)) == 40


# ---------------------------------------------------------------- balances
def test_balances_roll_up_the_tree(reg):
    region = make(reg, "region")
    unit = make(reg, "unit", region)
    project = make(reg, "project", region)
    alice = make(reg, "individual", unit)
    bob = make(reg, "individual", unit)
    outside = make(reg, "individual")
    nothing = make(reg, "region")
    names = put_entries(reg, [
        (alice, "a", 1_000_000, 1000, 5), (alice, "b", 500_000, 500, 0),
        (bob, "a", 2_000_000, 2000, 0), (unit, "a", 10, 0, 1), (project, "b", 7, 7, 0),
        (outside, "a", 99_000_000, 99_000, 0)])
    with reg.db.read() as s:
        top = accounts.balances(s, region)
        assert (top.own.entries, top.own.reduction_mg) == (0, 0)
        assert (top.subtree.entries, top.subtree.reduction_mg, top.subtree.points) == (
            5, 3_500_017, 3513)
        assert {m: {k: row[k] for k in ("entries", "reduction_mg", "points")}
                for m, row in top.subtree.by_methodology.items()} == {
            names["a"]: {"entries": 3, "reduction_mg": 3_000_010, "points": 3006},
            names["b"]: {"entries": 2, "reduction_mg": 500_007, "points": 507}}
        middle = accounts.balances(s, unit)
        assert (middle.own.entries, middle.own.reduction_mg, middle.own.points) == (1, 10, 1)
        assert (middle.subtree.entries, middle.subtree.reduction_mg, middle.subtree.points) == (
            4, 3_500_010, 3506)
        leaf = accounts.balances(s, alice).to_dict()
        assert leaf["own"] == leaf["subtree"]
        assert (leaf["own"]["reduction_kg"], leaf["own"]["points"]) == (1.5, 1505)
        assert accounts.balances(s, bob).own.reduction_mg == 2_000_000
        empty = accounts.balances(s, nothing)
        assert (empty.subtree.entries, empty.subtree.by_methodology) == (0, {})
        with pytest.raises(NotFound):
            accounts.balances(s, 999_999)


def test_balances_of_a_region_with_20k_accounts_below_it(reg):
    """One statement over a generated tree: a region, 20 units, 1,000 individuals under
    each, one entry per individual. No timing asserted: bench/bench_accounts.py times 1M
    (this was 100k, 30 s of the suite on PostgreSQL, spent inserting the tree)."""
    region = make(reg, "region")
    table = Account.__table__
    with reg.db.engine.begin() as c:
        base = dict(kind="unit", name="", domains=[], status="active", created_by=None,
                    created_at=NOW, updated_at=NOW)
        units = list(c.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True),
                               [{**base, "parent_id": region} for _ in range(20)]).scalars())
        for unit in units:
            c.execute(table.insert(), [{**base, "kind": "individual", "parent_id": unit}
                                       for _ in range(1000)])
        people = c.execute(sa.select(table.c.id).where(table.c.kind == "individual")
                           .order_by(table.c.id)).scalars().all()
        # the closure as accounts.create would have made it (rows written directly here)
        parent = dict(c.execute(sa.select(table.c.id, table.c.parent_id)
                                .where(table.c.kind == "individual")).all())
        c.execute(sa.insert(AccountAncestor.__table__), [
            *({"ancestor_id": region, "account": str(u), "account_id": u, "depth": 1} for u in units),
            *({"ancestor_id": parent[p], "account": str(p), "account_id": p, "depth": 1} for p in people),
            *({"ancestor_id": region, "account": str(p), "account_id": p, "depth": 2} for p in people)])
    put_entries(reg, [(p, "a", 1000, 1, 0) for p in people])
    with reg.db.read() as s:
        started = time.perf_counter()
        total = accounts.balances(s, region)
        elapsed = time.perf_counter() - started
    print(f"\nbalances of a region over {len(people) + len(units):,} accounts "
          f"({reg.db.dialect}): {elapsed * 1000:.0f} ms")
    assert (total.subtree.entries, total.subtree.reduction_mg) == (20_000, 20_000_000)
    assert total.own.entries == 0


def test_the_closure_follows_every_creation_and_move_as_the_parents_say(reg):
    """Differential: after random creations and moves (whole subtrees, to the top and
    back), the closure (AccountAncestor, which balances, statements, descendants and
    ancestors read) holds exactly the pairs a walk up accounts.parent_id finds, with
    their depths; and every account's subtree balance is the sum over that walk."""
    import random
    rng = random.Random(1413)
    made = [make(reg, "region")]
    kinds = {made[0]: "region"}
    for _ in range(24):
        kind = rng.choice(["region", "unit", "unit", "individual", "project"])
        parents = [a for a in made if kinds[a] in PARENT_KINDS[kind]] + [None]
        account = make(reg, kind, rng.choice(parents))
        made.append(account)
        kinds[account] = kind
    for _ in range(30):
        account = rng.choice(made)
        parents = [a for a in made if kinds[a] in PARENT_KINDS[kinds[account]]] + [None]
        with reg.uow() as s:
            try:
                accounts.set_parent(s, reg.admin, account, rng.choice(parents))
            except Invalid:  # a region under itself: refused, nothing changed
                s.rollback()
    put_entries(reg, [(a, "a", 1000 * (n + 1), n, 0) for n, a in enumerate(made)])
    with reg.db.read() as s:
        parent = dict(s.execute(sa.select(Account.id, Account.parent_id)).all())
        walked = set()
        for account in made:
            up, depth = parent[account], 1
            while up is not None:
                walked.add((up, str(account), account, depth))
                up, depth = parent[up], depth + 1
        stored = set(s.execute(sa.select(AccountAncestor.ancestor_id, AccountAncestor.account,
                                         AccountAncestor.account_id, AccountAncestor.depth)).all())
        assert stored == walked
        for account in made:
            below = sorted(a for (top, _, a, _) in walked if top == account)
            assert accounts.descendants(s, account) == below
            assert accounts.balances(s, account).subtree.reduction_mg == sum(
                1000 * (made.index(a) + 1) for a in [account, *below])


def test_a_credits_account_ids_are_checked_as_a_set_and_one_at_a_time_alike(reg):
    """resolve_statuses and known_statuses check many ids over the set at once
    (accounts._external_ids); a bad id among many is refused as _external_id refuses it."""
    good = [f"set-{n}" for n in range(50)]
    assert accounts._external_ids(reversed(good)) == sorted(good)
    assert accounts._external_ids(good + good) == sorted(good)
    assert accounts._external_ids([]) == []
    for bad, reason in (("", "non-empty"), ("  ", "non-empty"), (7, "non-empty"),
                        ("x" * (accounts.MAX_EXTERNAL_ID + 1), "at most")):
        with pytest.raises(Invalid, match=reason):
            accounts._external_ids(good + [bad])
        with reg.uow() as s, pytest.raises(Invalid, match=reason):
            accounts.resolve_statuses(s, reg.integrator, good + [bad])
    with reg.uow() as s:
        found = accounts.resolve_statuses(s, reg.integrator, good)
    assert sorted(found) == sorted(good) and len({a for a, _ in found.values()}) == 50
