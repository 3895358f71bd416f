"""Background services: the ingestion worker that drains the ``task`` queue."""
