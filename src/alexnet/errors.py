"""Errors that mean "the user asked for something we cannot do".

The CLI prints these as one line (``alexnet <cmd>: error: ...``) and exits non-zero, never with a
traceback. Library code raises them for bad input; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: unknown name, bad option value, missing or unreadable file."""


class UnknownModelError(UserError, KeyError):
    """``create_model`` was given a name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BadOptionError(UserError, ValueError):
    """A model, data or training option has a value outside what it accepts."""
