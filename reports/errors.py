"""Errors a reader of result folders can act on (a missing folder, a damaged file, a bad
threshold). reports/ reads result folders only and imports nothing from harness/: the CLI
maps this to its one-line message and exit code 2."""

from __future__ import annotations


class ReportError(Exception):
    """Bad input to `report` or `compare`: printed as one line, exit code 2."""

    exit_code = 2
