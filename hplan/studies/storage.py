"""Study storages: a SQLite file by default, any Optuna RDB URL or a journal file for many workers.

Every RDB storage is opened with heartbeats, so a trial whose worker died (killed, preempted, out
of memory) goes stale after ``grace_period`` seconds, is marked FAIL by the next worker that
starts a trial, and is re-queued as a WAITING copy with the same parameters by Optuna 5's
maintained ``RetryHeartbeatStaleTrialCallback`` (the older ``failed_trial_callback`` /
``RetryFailedTrialCallback`` path is deprecated). A database that cannot be reached fails within
``connect_timeout`` seconds with one line that names the URL (password hidden).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from hplan.errors import HplanError

if TYPE_CHECKING:
    import optuna

    from hplan.studies.config import StorageConfig

DEFAULT_DB = "study.db"
JOURNAL_PREFIX = "journal:"


def default_storage_url(out_dir: str | Path) -> str:
    """The zero-setup storage: a SQLite file in the study's output folder."""
    return f"sqlite:///{Path(out_dir).resolve() / DEFAULT_DB}"


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe for logs and error lines)."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported by open_storage
        return url.split("@")[-1] if "@" in url else url


def _engine_kwargs(url: str, connect_timeout: int) -> dict[str, object]:
    backend = url.split(":", 1)[0].split("+", 1)[0]
    if backend == "sqlite":
        # Several local workers share one file: wait for the write lock instead of failing.
        return {"connect_args": {"timeout": 60}}
    if backend in ("postgresql", "mysql"):
        return {"connect_args": {"connect_timeout": connect_timeout}, "pool_pre_ping": True}
    return {}


def open_storage(url: str, cfg: StorageConfig, *, must_exist: bool = False) -> optuna.storages.BaseStorage:
    """Open ``url`` as an Optuna storage with heartbeats and stale-trial retries.

    ``journal:PATH`` opens a journal file (no server, safe on shared file systems; no heartbeats).
    ``must_exist`` makes a missing SQLite/journal file an error instead of creating an empty one
    (for read-only commands such as ``hplan study show``).
    """
    import optuna

    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX):])
        if must_exist and not path.exists():
            raise HplanError(f"{url}: no study journal here (run `hplan study run` first)")
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))

    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception as err:  # noqa: BLE001 - sqlalchemy raises ArgumentError/ValueError variants
        raise HplanError(f"{url}: not a storage URL ({err}); expected e.g. sqlite:///study.db, "
                         "postgresql+psycopg2://user@host/db or journal:PATH") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db = Path(parsed.database)
        if must_exist and not db.exists():
            raise HplanError(f"{redact(url)}: no study storage here (run `hplan study run` first)")
        db.parent.mkdir(parents=True, exist_ok=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=cfg.max_retry)
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=_engine_kwargs(url, cfg.connect_timeout),
                    heartbeat_interval=cfg.heartbeat_interval,
                    grace_period=cfg.grace_period,
                    heartbeat_stale_trial_callback=callback,
                )
            except ImportError as err:
                raise HplanError(f"{redact(url)}: database driver missing ({err.__cause__ or err}); "
                                 "for PostgreSQL install hplan[postgres]") from None
            except Exception as err:  # noqa: BLE001 - sqlalchemy's OperationalError & co. carry the reason
                if _lost_schema_race(err) and attempt + 1 < _CREATE_ATTEMPTS:
                    time.sleep(0.5 * (attempt + 1))  # another worker is creating the tables right now
                    continue
                raise HplanError(f"{redact(url)}: cannot open study storage: {_first_line(err)}") from None
    raise AssertionError("unreachable")


# Workers started together on an empty database race to create Optuna's tables; the loser sees a
# duplicate-key or "already exists" error and simply opens the storage again.
_CREATE_ATTEMPTS = 5


def _lost_schema_race(err: BaseException) -> bool:
    from sqlalchemy import exc

    text = str(err).lower()
    return isinstance(err, exc.DBAPIError) and ("alembic_version" in text or "already exists" in text)


def _first_line(err: BaseException) -> str:
    cause = getattr(err, "orig", None) or err
    text = str(cause).strip().splitlines()
    return text[0] if text else type(err).__name__
