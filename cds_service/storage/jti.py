"""JWT replay protection: each (issuer, jti) is claimed once, in the database all instances share.

On the hook path (ReplayGuard) a claim is checked in this process's memory first, then in the
database, waited for CLAIM_WAIT_SECONDS at most: while the database is down, locked or slow the
claim is made in memory only (counted, logged once per outage), so no hook call waits on it."""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import TimeoutError as WaitTimeout

from prometheus_client import Counter
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .db import Database, background
from .schema import jti_claims

log = logging.getLogger("cds_service.storage")

PURGE_EVERY_SECONDS = 60.0
CLAIM_WAIT_SECONDS = 0.05   # how long a hook call waits for the shared claim
RETRY_SECONDS = 1.0         # after a failed or slow claim, the database is tried again this much later
MEMORY_CLAIMS = Counter("cds_jti_memory_claims_total",
                        "jti claims made in process memory only: the database was unreachable, locked or slow")


def short_key(value: str) -> str:
    """A bounded-length key for a column: long values are replaced by their SHA-256."""
    return value if len(value) <= 200 else "sha256:" + hashlib.sha256(value.encode()).hexdigest()


class JtiClaims:
    def __init__(self, db: Database):
        self.db = db
        self._purged_at = 0.0
        self._purge_lock = threading.Lock()
        self._insert = db.insert(jti_claims).on_conflict_do_nothing(index_elements=["issuer", "jti"]) \
            .returning(jti_claims.c.jti)

    def claim_jti(self, issuer: str, jti: str, expires_at: float) -> bool:
        """True the first time (issuer, jti) is seen, False for a replay. expires_at (epoch seconds) is
        when the row may be forgotten: the token's exp plus the leeway allowed on it."""
        self._maybe_purge()
        row = {"issuer": short_key(issuer), "jti": short_key(jti), "expires_at": float(expires_at)}
        try:
            return self.db.write(lambda conn: conn.execute(self._insert, row).first() is not None, fast=True)
        except IntegrityError:
            return False

    def purge_expired(self, now: float | None = None) -> int:
        """Forget the jti claims that have expired; returns how many."""
        now = time.time() if now is None else now
        return self.db.write(lambda conn: conn.execute(
            jti_claims.delete().where(jti_claims.c.expires_at < now)).rowcount)

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now - self._purged_at < PURGE_EVERY_SECONDS or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._purged_at = now
            self.purge_expired()
        except SQLAlchemyError:
            log.warning("could not delete expired jti claims", exc_info=True)
        finally:
            self._purge_lock.release()


class ReplayGuard:
    """claim_jti for the Authenticator: this process's memory, then the shared claim (bounded wait)."""

    def __init__(self, claims: JtiClaims, clock=time.time):
        self.claims = claims
        self.clock = clock
        self.seen: dict[tuple[str, str], float] = {}   # (issuer, jti) -> expires at
        self.lock = threading.Lock()
        self.swept_at = 0.0
        self.retry_at = 0.0        # monotonic: no database claim before then (an outage)
        self.down = False
        self.unshared: list[tuple[str, str, float]] = []  # claimed in memory only, written when it is back

    def __call__(self, issuer: str, jti: str, expires_at: float) -> bool:
        now = self.clock()
        with self.lock:
            if now - self.swept_at >= 1.0:
                self.seen = {k: t for k, t in self.seen.items() if t >= now}
                self.swept_at = now
            if self.seen.get((issuer, jti), -1.0) >= now:
                return False  # replayed to this process
            self.seen[(issuer, jti)] = expires_at
        if time.monotonic() < self.retry_at:
            return self._in_memory(issuer, jti, expires_at)
        future = background().submit(self.claims.claim_jti, issuer, jti, expires_at)
        try:
            claimed = future.result(timeout=CLAIM_WAIT_SECONDS)
        except (WaitTimeout, SQLAlchemyError) as exc:
            future.cancel()
            self._outage(exc)
            return self._in_memory(issuer, jti, expires_at)
        if self.down:
            self._recovered()
        return claimed

    def _in_memory(self, issuer: str, jti: str, expires_at: float) -> bool:
        MEMORY_CLAIMS.inc()
        with self.lock:
            if len(self.unshared) < 100_000:
                self.unshared.append((issuer, jti, expires_at))
        return True

    def _outage(self, exc: Exception) -> None:
        self.retry_at = time.monotonic() + RETRY_SECONDS
        if not self.down:
            self.down = True
            reason = "did not answer within %d ms" % (CLAIM_WAIT_SECONDS * 1000) if isinstance(exc, WaitTimeout) \
                else type(exc).__name__
            log.warning("jti replay claims fall back to this process's memory: the database %s", reason)

    def _recovered(self) -> None:
        self.down = False
        with self.lock:
            unshared, self.unshared = self.unshared, []
        log.warning("jti replay claims are shared again; %d claim(s) made in memory are written now", len(unshared))
        background().submit(self._share, unshared)

    def _share(self, unshared) -> None:
        """The claims made in memory during the outage, written so that other instances refuse them too."""
        now = self.clock()
        try:
            for issuer, jti, expires_at in unshared:
                if expires_at >= now:
                    self.claims.claim_jti(issuer, jti, expires_at)
        except SQLAlchemyError:
            log.warning("the jti claims made during the outage could not all be written")
