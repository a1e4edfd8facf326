"""The tables: the audit of hook calls and issued cards, card feedback, and JWT `jti` claims.

Only identifiers and coded values are stored, never clinical text or names."""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

ID_MAX = 255            # identifiers, codes and systems: longer values make a feedback entry malformed
SUGGESTIONS_MAX = 1024  # the accepted suggestion ids, sorted and joined by spaces
WRITER_MAX = 64         # a journal writer: host, process and a random part


class UTCDateTime(sa.TypeDecorator):
    """An aware UTC datetime: `timestamptz` on PostgreSQL, naive-UTC text on SQLite."""
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only

metadata = sa.MetaData()

hook_calls = sa.Table(
    "cds_hook_calls", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("called_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("service_id", sa.String(ID_MAX), nullable=False),
    sa.Column("hook_instance", sa.String(ID_MAX), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("latency_ms", sa.Float(), nullable=False),
    sa.Column("data_source", sa.String(32), nullable=False),
    sa.Column("knowledge_version", sa.String(64)),  # the knowledge release (version+digest) that answered
    sa.Column("issuer", sa.String(ID_MAX), nullable=False, server_default=""),  # the JWT's iss ("" unsigned)
    # The chain (audit_chain.py): the process that answered, its count of calls, the previous row's
    # hash and this row's (its content and its cards). None on rows written before chaining.
    sa.Column("writer", sa.String(WRITER_MAX)),
    sa.Column("seq", BigId),
    sa.Column("prev_hash", sa.String(64)),
    sa.Column("row_hash", sa.String(64)),
    sa.Index("uq_cds_hook_calls_writer_seq", "writer", "seq", unique=True),
)

issued_cards = sa.Table(
    "cds_issued_cards", metadata,
    sa.Column("card_uuid", sa.String(ID_MAX), primary_key=True),
    sa.Column("call_id", BigId, sa.ForeignKey("cds_hook_calls.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("order_id", sa.String(ID_MAX)),
    sa.Column("rule", sa.String(ID_MAX), nullable=False),
    sa.Column("indicator", sa.String(16), nullable=False),
    sa.Column("rating", sa.String(64)),
    sa.Column("suggestion_uuids", sa.Text(), nullable=False, server_default=""),  # space-separated
)

feedback = sa.Table(
    "cds_feedback", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("service_id", sa.String(ID_MAX), nullable=False),
    sa.Column("card_uuid", sa.String(ID_MAX), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("outcome_at", UTCDateTime(), nullable=False),
    sa.Column("suggestions", sa.String(SUGGESTIONS_MAX), nullable=False),  # sorted, space-separated; "" if none
    sa.Column("matched", sa.Boolean(), nullable=False),                  # the card was issued by us
    sa.Column("suggestions_matched", sa.Boolean()),                      # accepted ids are the card's (None: n/a)
    sa.Column("reason_system", sa.String(ID_MAX)),
    sa.Column("reason_code", sa.String(ID_MAX)),
    sa.Column("reason_display", sa.String(ID_MAX)),
    sa.Column("has_comment", sa.Boolean(), nullable=False),              # the comment's text is never stored
    sa.UniqueConstraint("card_uuid", "outcome", "outcome_at", "suggestions", name="uq_cds_feedback_entry"),
)

jti_claims = sa.Table(
    "cds_jti_claims", metadata,
    sa.Column("issuer", sa.String(ID_MAX), primary_key=True),
    sa.Column("jti", sa.String(ID_MAX), primary_key=True),
    sa.Column("expires_at", sa.Float(), nullable=False, index=True),  # seconds since the epoch
)
