"""Turning uploaded files into chunk texts: parsers per file format, chunkers per chunk_method.

Everything here is pure (bytes in, dataclasses out, no HTTP, no database, no I/O), so the task
executor can run it in a worker thread and tests can call it directly.
"""
