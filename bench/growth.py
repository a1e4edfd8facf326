"""Storage growth: `python -m bench.growth [--database-url URL] [--calls N]` writes N typical hook calls
(one warning card with one suggestion, as the typical benchmark call answers) through the audit
journal into the database, and prints the bytes each call takes in the journal and in the database
(tables and indexes), and what that is per day at 10 calls per second. Default: SQLite in a
temporary folder; a PostgreSQL URL gets the rows in its cds_* tables (use a scratch database)."""
from __future__ import annotations

import argparse
import shutil
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa

from cds_service import storage
from cds_service.cards import IssuedCard

PER_DAY = 10 * 86400
TABLES = ("cds_hook_calls", "cds_issued_cards")


def database_bytes(store: storage.Store, path: Path | None) -> int:
    if path is not None:
        store.engine.dispose()  # the last connection closed: SQLite moves the WAL into the file
        return path.stat().st_size
    with store.engine.connect() as conn:
        return sum(conn.execute(sa.text("SELECT pg_total_relation_size(:t)"), {"t": t}).scalar() for t in TABLES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary folder")
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cds-growth-"))
    try:
        sqlite = None if args.database_url else work / "cds.db"
        store = storage.Store(args.database_url or f"sqlite:///{sqlite}")
        journal = storage.Journal(store, work / "journal")
        before = database_bytes(store, sqlite)
        journaled = 0
        for n in range(args.calls):
            card = IssuedCard(str(uuid.uuid4()), f"order-{n}", "all-child-initial-staging-asymptomatic-chest/ct-chest",
                              "warning", "not-appropriate", (str(uuid.uuid4()),))
            journal.submit(service_id="acr-all-staging-order-select", hook_instance=str(uuid.uuid4()), status=200,
                           latency_ms=2.345, data_source="prefetch", cards=[card])
            if n % 1000 == 999:
                journaled += sum(p.stat().st_size for p in (work / "journal").glob("*.jsonl"))
                journal.flush()
                journal._rotate()  # count each line once: a drained file is replaced
        journal.flush()
        journal.close()
        grown = database_bytes(store, sqlite) - before
        per_call_db, per_call_journal = grown / args.calls, journaled / args.calls
        print(f"{'PostgreSQL' if not sqlite else 'SQLite'}, {args.calls} calls (one warning card each):")
        print(f"  database: {per_call_db:.0f} bytes per call (tables and indexes) -> "
              f"{per_call_db * PER_DAY / 2**20:.0f} MiB per day at 10 calls/s, "
              f"{per_call_db * PER_DAY * 365 * 6 / 2**30:.0f} GiB in 6 years")
        print(f"  journal:  {per_call_journal:.0f} bytes per call -> a 1024 MiB budget holds "
              f"{2**30 / per_call_journal / 10 / 3600:.1f} hours of an outage at 10 calls/s")
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
