"""Repeat-alert suppression (issue 11): the warnings shown, by card uuid; the overridden ones; the count of
suppressed cards per rule. No patient id is stored: a warning is known by an HMAC of patient, order and
rule under the deployment's key.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

from cds_service.storage.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID_MAX = 255
KEY_CHARS = 64  # hex HMAC-SHA256
Count = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cds_shown_warnings",
        sa.Column("card_uuid", sa.String(ID_MAX), primary_key=True),
        sa.Column("warning_key", sa.String(KEY_CHARS), nullable=False),
        sa.Column("shown_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_cds_shown_warnings_shown_at", "cds_shown_warnings", ["shown_at"])
    op.create_table(
        "cds_overridden_warnings",
        sa.Column("warning_key", sa.String(KEY_CHARS), primary_key=True),
        sa.Column("overridden_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_cds_overridden_warnings_overridden_at", "cds_overridden_warnings", ["overridden_at"])
    op.create_table(
        "cds_suppressed_cards",
        sa.Column("rule", sa.String(ID_MAX), primary_key=True),
        sa.Column("count", Count, nullable=False),
        sa.Column("last_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("cds_suppressed_cards", "cds_overridden_warnings", "cds_shown_warnings"):
        op.drop_table(table)
