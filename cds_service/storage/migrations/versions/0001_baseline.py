"""Baseline: the audit of hook calls and issued cards, card feedback, and JWT jti claims.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

from cds_service.storage.schema import BigId, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID_MAX = 255  # the limits as they were at this revision, not as schema.py may later say
SUGGESTIONS_MAX = 1024


def upgrade() -> None:
    op.create_table(
        "cds_hook_calls",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("called_at", UTCDateTime(), nullable=False),
        sa.Column("service_id", sa.String(ID_MAX), nullable=False),
        sa.Column("hook_instance", sa.String(ID_MAX), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("data_source", sa.String(32), nullable=False),
    )
    op.create_index("ix_cds_hook_calls_called_at", "cds_hook_calls", ["called_at"])
    op.create_table(
        "cds_issued_cards",
        sa.Column("card_uuid", sa.String(ID_MAX), primary_key=True),
        sa.Column("call_id", BigId, sa.ForeignKey("cds_hook_calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("order_id", sa.String(ID_MAX)),
        sa.Column("rule", sa.String(ID_MAX), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("rating", sa.String(64)),
        sa.Column("suggestion_uuids", sa.Text(), nullable=False, server_default=""),
    )
    op.create_index("ix_cds_issued_cards_call_id", "cds_issued_cards", ["call_id"])
    op.create_table(
        "cds_feedback",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("service_id", sa.String(ID_MAX), nullable=False),
        sa.Column("card_uuid", sa.String(ID_MAX), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_at", UTCDateTime(), nullable=False),
        sa.Column("suggestions", sa.String(SUGGESTIONS_MAX), nullable=False),
        sa.Column("matched", sa.Boolean(), nullable=False),
        sa.Column("suggestions_matched", sa.Boolean()),
        sa.Column("reason_system", sa.String(ID_MAX)),
        sa.Column("reason_code", sa.String(ID_MAX)),
        sa.Column("reason_display", sa.String(ID_MAX)),
        sa.Column("has_comment", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("card_uuid", "outcome", "outcome_at", "suggestions", name="uq_cds_feedback_entry"),
    )
    op.create_table(
        "cds_jti_claims",
        sa.Column("issuer", sa.String(ID_MAX), primary_key=True),
        sa.Column("jti", sa.String(ID_MAX), primary_key=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_cds_jti_claims_expires_at", "cds_jti_claims", ["expires_at"])


def downgrade() -> None:
    op.drop_table("cds_jti_claims")
    op.drop_table("cds_feedback")
    op.drop_table("cds_issued_cards")
    op.drop_table("cds_hook_calls")
