"""Which arm of an A/B test served each model call, so usage can be broken down per arm.

Null for calls of a plain model; indexed because ``/api/v1/usage?group_by=arm`` groups on it.
"""

from peewee import CharField


def up(migrator, db):
    migrator.migrate(migrator.add_column("usage", "arm", CharField(max_length=128, null=True, index=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_index("usage", "usage_arm"), migrator.drop_column("usage", "arm"))
