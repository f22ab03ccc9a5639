"""`python -m app` is the same as the `kalshi-data` entry point (used to spawn child processes)."""

from app.cli import main

main()
