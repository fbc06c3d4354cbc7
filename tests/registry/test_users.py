"""Users, roles and passwords."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from registry import audit, users
from registry.errors import Forbidden, Invalid


def test_passwords_are_argon2id_and_verified(db):
    with db.unit_of_work() as s:
        user = users.create_user(s, None, email=" Ann@Example.ORG ", name="Ann",
                                 roles=["expert"], password="a long passphrase")
        assert user.email == "ann@example.org"
        assert user.password_hash.startswith("$argon2id$")
        assert "a long passphrase" not in user.password_hash
    with db.unit_of_work() as s:
        assert users.authenticate(s, "ANN@example.org", "a long passphrase").id == user.id
        assert users.authenticate(s, "ann@example.org", "wrong passphrase") is None
        assert users.authenticate(s, "nobody@example.org", "a long passphrase") is None
        assert users.authenticate(s, "not an email", "a long passphrase") is None


def test_weak_hashes_are_upgraded_at_login(db):
    with db.unit_of_work() as s:
        user = users.create_user(s, None, email="b@example.org", name="B", roles=["expert"],
                                 password="a long passphrase")
        weak = user.password_hash
    old = users.use_hasher(PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
    try:
        with db.unit_of_work() as s:
            assert users.authenticate(s, "b@example.org", "a long passphrase") is not None
        with db.read() as s:
            assert users.by_email(s, "b@example.org").password_hash != weak
    finally:
        users.use_hasher(old)


def test_short_passwords_unknown_roles_and_duplicates_are_refused(db):
    with db.unit_of_work() as s:
        with pytest.raises(Invalid, match="at least 10"):
            users.create_user(s, None, email="c@example.org", name="C", roles=["expert"],
                              password="short")
        with pytest.raises(Invalid, match="unknown role"):
            users.create_user(s, None, email="c@example.org", name="C", roles=["superuser"])
        with pytest.raises(Invalid, match="at least one role"):
            users.create_user(s, None, email="c@example.org", name="C", roles=[])
        with pytest.raises(Invalid, match="not an email"):
            users.create_user(s, None, email="c-at-example", name="C", roles=["expert"])
        users.create_user(s, None, email="c@example.org", name="C", roles=["expert"])
        with pytest.raises(Invalid, match="exists"):
            users.create_user(s, None, email="C@EXAMPLE.org", name="C2", roles=["expert"])


def test_only_administrators_manage_users_and_every_change_is_audited(reg):
    with reg.uow() as s:
        with pytest.raises(Forbidden):
            users.create_user(s, reg.expert, email="d@example.org", name="D", roles=["expert"])
        with pytest.raises(Forbidden):
            users.grant_role(s, reg.members[0], reg.expert, "administrator")
        with pytest.raises(Forbidden):
            users.set_password(s, reg.expert, reg.members[0], "another passphrase")
    with reg.uow() as s:
        d = users.create_user(s, reg.admin, email="d@example.org", name="D", roles=["expert"])
        users.grant_role(s, reg.admin, d, "committee_member")
        users.revoke_role(s, reg.admin, d, "expert")
        users.set_password(s, d, d, "my own passphrase")
        users.set_active(s, reg.admin, d, False)
        assert d.roles == {"committee_member"} and not d.active
        with pytest.raises(Forbidden):
            users.revoke_role(s, reg.admin, reg.admin, "administrator")
        with pytest.raises(Forbidden):
            users.set_active(s, reg.admin, reg.admin, False)
    with reg.db.read() as s:
        actions = [e.action for e in audit.entries_for(s, "user", d.id)]
        assert actions == ["user.create", "user.grant_role", "user.revoke_role",
                           "user.set_password", "user.deactivate"]
        assert users.authenticate(s, "d@example.org", "my own passphrase") is None  # inactive


def test_settings_from_environment(tmp_path):
    from registry.settings import Settings, default_database_url
    s = Settings.from_env({})
    assert s.database_url == default_database_url() and s.database_url.startswith("sqlite:///")
    assert s.secret_key_is_ephemeral and len(s.secret_key) > 20 and s.port == 5000
    s = Settings.from_env({"DATABASE_URL": "postgresql+psycopg://x@h/db", "SECRET_KEY": "k",
                           "PORT": "9000"})
    assert (s.database_url, s.secret_key, s.secret_key_is_ephemeral, s.port) == (
        "postgresql+psycopg://x@h/db", "k", False, 9000)
    with pytest.raises(ValueError, match="PORT"):
        Settings.from_env({"PORT": "eighty"})
