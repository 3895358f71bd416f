"""Ragline's retrieval and model machinery (no HTTP here).

Importing this package pins the process to offline operation before any model library is
imported: nothing may download weights, tokenizer files or price maps at run time.
"""

from rag.offline import configure_offline_environment

configure_offline_environment()
