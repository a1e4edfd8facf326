"""The caller of each hook call and each shown warning (issue 20): feedback is accepted only for cards
issued to the issuer that sends it, and an override silences only that issuer's warning.

Revision ID: 0004_issue20
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_issue20"
down_revision = "0004_issue19"
branch_labels = None
depends_on = None

ID_MAX = 255
TABLES = ("cds_hook_calls", "cds_shown_warnings")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("issuer", sa.String(ID_MAX), nullable=False, server_default=""))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("issuer")
