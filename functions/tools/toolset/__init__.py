"""The tools this function serves, one module per group: files, git, search and run_command.

Each module exports its `ToolDefinition`s; `functions.tools.catalog` gathers them into the registry.
"""
