"""`python -m expertune ...`: the same entry point as the `expertune` command."""

from expertune.cli import entry

raise SystemExit(entry())
