"""The live service's durable event log (SQLAlchemy 2: SQLite by default, PostgreSQL by URL).

Event sourcing: every input the coordinator feeds its executor core (a task
submitted, an attempt leased, completed or failed, an agent joining, failing or
leaving, a timer tick, an installed plan) is one row `(seq, time, kind, body)`.
The core is deterministic, so replaying the rows in `seq` order into a fresh
core rebuilds the queues, the attempts and leases, the fair-share clocks and
the learned speeds exactly as they were. Rows are appended in batches, one
transaction per batch (group commit), so durability does not cap throughput.

`live_meta` holds the service's epoch: core times are seconds since it, so
they stay small and continue across restarts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import make_url

metadata = MetaData()

events_table = Table(
    "live_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("time", Float, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("body", Text, nullable=False),
)

meta_table = Table(
    "live_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

#: One row of the log: (seq, time, kind, body as JSON text).
Row = tuple[int, float, str, str]


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite files get WAL, a busy timeout and their directory.

    Shared by the job store (api.store) and the live event log, so both read
    the same URL the same way.
    """
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if u.database and u.database != ":memory:":
        Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


class LiveStore:
    """Append-only event log plus the epoch. Synchronous; call it from a thread."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        metadata.create_all(self.engine, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()

    def epoch(self) -> float:
        """The Unix time core time 0 stands for (set on the first start, then kept)."""
        with self.engine.begin() as conn:
            got = conn.execute(select(meta_table.c.value)
                               .where(meta_table.c.key == "epoch")).scalar()
            if got is not None:
                return float(got)
            now = time.time()
            conn.execute(insert(meta_table).values(key="epoch", value=repr(now)))
            return now

    def last_seq(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(events_table.c.seq))).scalar() or 0)

    def append(self, rows: list[Row]) -> None:
        """Append rows in one transaction (all or nothing)."""
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(insert(events_table),
                         [{"seq": s, "time": t, "kind": k, "body": b} for s, t, k, b in rows])

    def rows(self, *, chunk: int = 5_000) -> Iterator[list[Row]]:
        """Every row in `seq` order, `chunk` rows at a time (bounded memory)."""
        after = 0
        c = events_table.c
        while True:
            with self.engine.connect() as conn:
                got = conn.execute(select(c.seq, c.time, c.kind, c.body).where(c.seq > after)
                                   .order_by(c.seq).limit(chunk)).all()
            if not got:
                return
            yield [(int(r[0]), float(r[1]), str(r[2]), str(r[3])) for r in got]
            after = int(got[-1][0])

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(events_table)).scalar()
                       or 0)


__all__ = ["LiveStore", "Row", "make_engine"]
