"""Alembic environment: migrations run on the connection storage.migrate.upgrade() passes in, inside
its transaction. A new revision: a file in versions/ whose down_revision is the current head."""
from alembic import context

from cds_service.storage.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
