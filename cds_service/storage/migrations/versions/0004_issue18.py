"""The audit chain (issue 18): each hook-call row names the process that wrote it (its journal), its
number in that process, the previous row's hash and its own. The pair (writer, seq) is unique: a
journal replayed twice inserts nothing twice.

Revision ID: 0004_issue18
Revises: 0004_issue20
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_issue18"
down_revision = "0004_issue20"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("cds_hook_calls", sa.Column("writer", sa.String(64)))
    op.add_column("cds_hook_calls", sa.Column("seq", BigId))
    op.add_column("cds_hook_calls", sa.Column("prev_hash", sa.String(64)))
    op.add_column("cds_hook_calls", sa.Column("row_hash", sa.String(64)))
    op.create_index("uq_cds_hook_calls_writer_seq", "cds_hook_calls", ["writer", "seq"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_cds_hook_calls_writer_seq", "cds_hook_calls")
    for column in ("row_hash", "prev_hash", "seq", "writer"):
        op.drop_column("cds_hook_calls", column)
