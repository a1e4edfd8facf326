"""JWT replay protection: each (issuer, jti) is claimed once, in the database all instances share."""
from __future__ import annotations

import hashlib
import logging
import threading
import time

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .db import Database
from .schema import jti_claims

log = logging.getLogger("cds_service.storage")

PURGE_EVERY_SECONDS = 60.0


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
            return self.db.write(lambda conn: conn.execute(self._insert, row).first() is not None)
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
