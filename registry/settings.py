"""Settings from the environment. Small on purpose.

Here, in the lowest package that reads them (the registry opens the default database),
so that the web UI and the command line, above it, read them from here too.

    DATABASE_URL  SQLAlchemy URL; default an SQLite file: <checkout>/var/tanpu.db when
                  running from a source checkout, else $XDG_DATA_HOME/tanpu/tanpu.db
                  (~/.local/share/tanpu/tanpu.db). PostgreSQL:
                  postgresql+psycopg://user@host:5432/dbname
    SECRET_KEY    signs web sessions; unset: a random key per process (sessions do not
                  survive a restart), which is fine for development only
    PORT          the web server's port (default 5000)
    TANPU_SMTP_HOST   the SMTP server that sends notification e-mail; unset (the
                      default): no e-mail, notifications are shown in the web UI only
    TANPU_SMTP_PORT   its port (default 25); TANPU_SMTP_FROM the sender (default
                      tanpu@localhost); TANPU_SMTP_USER / TANPU_SMTP_PASSWORD to log in;
                      TANPU_SMTP_STARTTLS=1 to upgrade the connection first
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

_CHECKOUT = Path(__file__).resolve().parent.parent


def default_database_path() -> Path:
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / ".git").exists():
        return _CHECKOUT / "var" / "tanpu.db"
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "tanpu" / "tanpu.db"


def default_database_url() -> str:
    return f"sqlite:///{default_database_path()}"


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "tanpu@localhost"
    user: str = ""
    password: str = ""
    starttls: bool = False
    timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Optional["SmtpSettings"]:
        """None unless TANPU_SMTP_HOST is set: e-mail is off by default."""
        host = (env.get("TANPU_SMTP_HOST") or "").strip()
        if not host:
            return None
        try:
            port = int(env.get("TANPU_SMTP_PORT") or 25)
        except ValueError:
            raise ValueError(f"TANPU_SMTP_PORT must be a number, not {env.get('TANPU_SMTP_PORT')!r}") from None
        return cls(host=host, port=port, sender=env.get("TANPU_SMTP_FROM") or "tanpu@localhost",
                   user=env.get("TANPU_SMTP_USER") or "",
                   password=env.get("TANPU_SMTP_PASSWORD") or "",
                   starttls=(env.get("TANPU_SMTP_STARTTLS") or "") in ("1", "true", "yes"))


@dataclass(frozen=True)
class Settings:
    database_url: str
    secret_key: str
    secret_key_is_ephemeral: bool
    port: int
    smtp: Optional[SmtpSettings] = None

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Settings":
        env = os.environ if env is None else env
        secret = env.get("SECRET_KEY") or ""
        try:
            port = int(env.get("PORT") or 5000)
        except ValueError:
            raise ValueError(f"PORT must be a number, not {env.get('PORT')!r}") from None
        return cls(database_url=env.get("DATABASE_URL") or default_database_url(),
                   secret_key=secret or secrets.token_urlsafe(32),
                   secret_key_is_ephemeral=not secret,
                   port=port, smtp=SmtpSettings.from_env(env))


def load() -> Settings:
    return Settings.from_env()
