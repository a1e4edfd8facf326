"""Go-live governance (issue 19): the knowledge release on every audited hook call; the cards withheld
from the EHR (silent mode, rules switched off) by card uuid; imaging orders per day by outcome, for the
coverage of the monitoring report.

Revision ID: 0004_issue19
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

from cds_service.storage.schema import UTCDateTime

revision = "0004_issue19"
down_revision = "0003"
branch_labels = None
depends_on = None

ID_MAX = 255
Count = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("cds_hook_calls")}
    if "knowledge_version" not in columns:  # a database the code's metadata built (create_all) has it already
        with op.batch_alter_table("cds_hook_calls") as table:
            table.add_column(sa.Column("knowledge_version", sa.String(64)))
    op.create_table(
        "cds_withheld_cards",
        sa.Column("card_uuid", sa.String(ID_MAX), primary_key=True),
        sa.Column("withheld_at", UTCDateTime(), nullable=False),
        sa.Column("why", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(ID_MAX)),
    )
    op.create_table(
        "cds_daily_orders",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("outcome", sa.String(16), primary_key=True),
        sa.Column("count", Count, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cds_daily_orders")
    op.drop_table("cds_withheld_cards")
    with op.batch_alter_table("cds_hook_calls") as table:
        table.drop_column("knowledge_version")
