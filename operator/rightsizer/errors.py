"""Errors that end a command with one line on stderr (``cli.main`` prints them and sets the exit code)."""

from __future__ import annotations


class ConfigurationError(ValueError):
    """What the command was given or found cannot work (missing credentials, say): exit 2."""
