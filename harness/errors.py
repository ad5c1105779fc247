"""Errors the user can act on: the CLI prints them as one line and exits 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or environment: a scenario file, an unknown target, an unreachable broker."""

    exit_code = 2
