"""Numbered schema migrations, applied in order by ``api.db.migrate.upgrade``.

Each ``NNNN_name.py`` defines ``up(migrator, db)`` (and ``down``); peewee's
``playhouse.migrations.Runner`` records what ran in the ``schema_migration`` table. A change
to ``api/db/models.py`` ships with a new numbered file here; applied files never change.
"""
