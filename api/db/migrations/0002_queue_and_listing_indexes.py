"""Indexes that keep the queue and document listings cheap as a dataset grows.

``task(status, create_time)``: a claim walks the queued (or expired) tasks oldest first and
stops after the few it takes, instead of sorting the whole queue. ``document(kb_id,
create_time)``: a page of a dataset's documents in upload order is read in index order, not
sorted anew for every page a client polls.
"""

from playhouse.migrate import make_index_name

INDEXES = (("task", ("status", "create_time")), ("document", ("kb_id", "create_time")))


def up(migrator, db):
    migrator.migrate(*(migrator.add_index(table, columns) for table, columns in INDEXES))


def down(migrator, db):
    migrator.migrate(*(migrator.drop_index(table, make_index_name(table, columns)) for table, columns in INDEXES))
