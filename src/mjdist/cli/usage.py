"""User mistakes: one line on stderr, exit code 2, nothing written or started."""

from __future__ import annotations

import sys

USAGE_EXIT_CODE = 2


class UsageError(ValueError):
    """Bad input from the user; the message is one line that says what was wrong and what would be right."""


def fail_usage(prog: str, message: str) -> int:
    """Print ``<prog>: error: <message>`` and return the usage exit code."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return USAGE_EXIT_CODE
