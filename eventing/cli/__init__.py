"""The `victor` command line: one module per command group, listed once in `eventing/cli/main.py`."""
