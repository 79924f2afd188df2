"""The sections of make bench (scripts/bench.py): one module per concern."""
