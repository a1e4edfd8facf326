"""Site code map (issue 11): imaging-looking orders that matched no procedure, by coding system and code.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

from cds_service.storage.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID_MAX = 255
Count = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cds_unmatched_orders",
        sa.Column("system", sa.String(ID_MAX), primary_key=True),
        sa.Column("code", sa.String(ID_MAX), primary_key=True),
        sa.Column("count", Count, nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cds_unmatched_orders")
