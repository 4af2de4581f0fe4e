"""The public API is pinned: ``mfs_fast.__all__`` and every CLI command with its options, against a
committed snapshot (tests/data/public_api.txt), so a change to either is deliberate.

After a deliberate change: ``.venv/bin/python tests/test_public_api.py --write``, and commit the diff.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parent / "data" / "public_api.txt"


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """Each argument as its flags (or its positional name), with 'required' when it is."""
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = "/".join(action.option_strings) or action.dest
        rows.append(name + (" (required)" if action.required and action.option_strings else ""))
    return rows


def _commands(parser: argparse.ArgumentParser, prefix: str = "mfs-fast") -> list[str]:
    lines = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                lines.append(f"{prefix} {name}: {', '.join(_options(sub)) or '-'}")
                lines.extend(_commands(sub, f"{prefix} {name}"))
    return lines


def public_api() -> str:
    import mfs_fast
    from mfs_fast.cli import build_parser

    lines = ["# mfs_fast.__all__", *sorted(mfs_fast.__all__), "", "# CLI commands and options",
             *_commands(build_parser())]
    return "\n".join(lines) + "\n"


def test_public_api_matches_the_snapshot():
    current = public_api()
    assert current == SNAPSHOT.read_text(), (
        "the public API changed: if deliberate, run `.venv/bin/python tests/test_public_api.py --write` "
        "and commit tests/data/public_api.txt")


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    SNAPSHOT.write_text(public_api())
    print(f"wrote {SNAPSHOT}")
