"""``python -m api``: serve Ragline under hypercorn (the same as ``ragline serve``)."""

from api.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["serve"]))
