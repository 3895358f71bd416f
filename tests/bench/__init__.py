"""Benchmarks, run on demand (``python -m tests.bench.<name>``), never by ``make test``."""

from pathlib import Path

# The shared benchmark data beside the checkouts on this machine (not inside the repository, so
# a clone anywhere still finds it).
SCIFACT = Path("/work/shared/data/scifact")
