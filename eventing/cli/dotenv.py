"""`.env` in the current directory, read by every `victor` command before its settings.

The process environment wins over the file, so a variable set in the shell or by a
container is never overridden. Lines are `KEY=VALUE` (optionally `export KEY=VALUE`);
blank lines and lines starting with `#` are skipped; a value may be wrapped in single
or double quotes. An empty value (`KEY=`, as `.env.example` lists unset settings)
leaves the variable unset. No expansion and no multi-line values: a line the format
does not allow stops the command with one line naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from pathlib import Path

_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


class DotenvError(ValueError):
    """A line of the file is not `KEY=VALUE`."""


def parse_dotenv(text: str, source: str = ".env") -> dict[str, str]:
    """The variables a `.env` text sets, in order; empty values are left out."""
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise DotenvError(f"{source} line {number}: expected KEY=VALUE, got {line[:60]!r}")
        key, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:  # an unquoted value ends where a comment starts
            value = value.split(" #", 1)[0].rstrip()
        if value:
            found[key] = value
    return found


def load_dotenv(environ: MutableMapping[str, str], path: Path = Path(".env")) -> list[str]:
    """Set the variables of `path` that `environ` does not have yet; returns their names."""
    if not path.is_file():
        return []
    loaded = []
    for key, value in parse_dotenv(path.read_text(encoding="utf-8", errors="replace"), str(path)).items():
        if key not in environ:
            environ[key] = value
            loaded.append(key)
    return loaded
