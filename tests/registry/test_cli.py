"""tanpu db upgrade, tanpu admin create-user, tanpu audit verify."""

from __future__ import annotations

import sqlalchemy as sa
from click.testing import CliRunner

from registry import migrate, users
from registry.db import Database
from tanpu.cli import main


def run(url, *args, input=None):
    return CliRunner().invoke(main, list(args), env={"DATABASE_URL": url}, input=input)


def test_upgrade_create_user_and_verify(empty_url):
    out = run(empty_url, "audit", "verify")
    assert out.exit_code == 1 and "tanpu db upgrade" in out.output
    out = run(empty_url, "db", "upgrade")
    assert out.exit_code == 0 and f"empty -> {migrate.head()}" in out.output, out.output
    assert "is up to date" in run(empty_url, "db", "upgrade").output

    out = run(empty_url, "admin", "create-user", "--email", "root@tanpu.test", "--name", "Root",
              "--role", "administrator", "--role", "expert", "--password", "a long passphrase")
    assert out.exit_code == 0, out.output
    assert "created user 1 root@tanpu.test (administrator, expert)" in out.output
    # prompted (twice) when --password is not given
    out = run(empty_url, "admin", "create-user", "--email", "i@tanpu.test", "--name", "Int",
              "--role", "integrator", input="another passphrase\nanother passphrase\n")
    assert out.exit_code == 0, out.output
    out = run(empty_url, "admin", "create-user", "--email", "root@tanpu.test", "--name", "Again",
              "--role", "expert", "--password", "a long passphrase")
    assert out.exit_code == 1 and "exists" in out.output

    db = Database(empty_url)
    try:
        with db.read() as s:
            root = users.authenticate(s, "root@tanpu.test", "a long passphrase")
            assert root is not None and root.password_hash.startswith("$argon2id$")
        out = run(empty_url, "audit", "verify")
        assert out.exit_code == 0 and out.output.startswith("audit chain ok: 2 entries")

        with db.engine.begin() as c:
            if db.dialect == "postgresql":
                c.execute(sa.text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
            else:
                c.execute(sa.text("DROP TRIGGER audit_log_no_update"))
            c.execute(sa.text("UPDATE audit_log SET object_id = '7' WHERE seq = 2"))
        out = run(empty_url, "audit", "verify")
        assert out.exit_code == 1
        assert "audit chain broken at entry 2: its content does not match its hash" in out.output
    finally:
        db.dispose()
