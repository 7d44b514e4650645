"""The database engine and the one way to run a transaction.

Store functions take an `AsyncConnection` and never commit; the domain's
actions open a transaction with `Database.transaction()` and publish events
only after it has committed. A database that cannot be reached becomes the
spec's `unavailable` error here, once, so nothing above has to know driver
exception types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util.concurrency import greenlet_spawn

from chatserver.errors import unavailable
from chatserver.settings import Settings
from chatserver.store import dialect

# Waiting longer than this for a pooled connection means the database is
# overwhelmed or gone; the client is better served by a quick `unavailable`.
POOL_TIMEOUT_SECONDS = 5.0
# Fail a connection attempt to a dead server fast instead of hanging sends.
CONNECT_TIMEOUT_SECONDS = 3
# Replace a pooled connection after this long: proxies and firewalls drop
# connections idle for an hour, and a dropped one costs a failed request.
POOL_RECYCLE_SECONDS = 1800


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError | OSError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return dialect.sqlite_engine(settings.sqlalchemy_url)
    return create_async_engine(
        settings.sqlalchemy_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_overflow,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        pool_recycle=POOL_RECYCLE_SECONDS,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(create_engine(settings))

    @property
    def is_sqlite(self) -> bool:
        return dialect.is_sqlite(self.engine)

    @property
    def writes_batches_in_one_statement(self) -> bool:
        """Whether a send batch can take the fast writer (`store/send_batch.py`:
        one guarded statement, PostgreSQL); SQLite takes the careful one."""
        return dialect.is_postgres(self.engine)

    @property
    def locks_rows(self) -> bool:
        """Whether `SELECT … FOR UPDATE` locks rows (PostgreSQL), so a claim
        can be held across a slow step; SQLite serialises writers instead."""
        return dialect.is_postgres(self.engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on success; outages become `unavailable`."""
        try:
            async with self.engine.begin() as conn:
                yield conn
        except Exception as exc:
            if _is_outage(exc):
                raise unavailable() from exc
            raise

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[Any]:
        """A pooled connection's driver connection (psycopg's, on
        PostgreSQL), for statements that need no SQLAlchemy around them:
        the send batch's fast writer (`store/send_batch.py`). Checked out
        and in without a SQLAlchemy connection and transaction, which cost
        about 125 µs of the worker's CPU per batch (docs/performance.md);
        the pool and its bounds are the same. Outages become `unavailable`."""
        try:
            proxied = await self.engine.raw_connection()
        except Exception as exc:
            if _is_outage(exc):
                raise unavailable() from exc
            raise
        try:
            yield proxied.driver_connection
        except BaseException:
            # A failed or cancelled statement may have left it in any state.
            await greenlet_spawn(proxied.invalidate)
            raise
        finally:
            # Checking in resets the connection through the async driver,
            # which SQLAlchemy runs in a greenlet.
            await greenlet_spawn(proxied.close)

    async def ping(self) -> bool:
        try:
            async with self.transaction() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()
