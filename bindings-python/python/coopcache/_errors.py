"""Exceptions defined in Python (the native module raises them by name)."""

from __future__ import annotations


class RemoteError(Exception):
    """A computation failed in another process (shared mode): the original exception's type
    name and message, as they arrived through Redis. ``str(e)`` is ``"TypeName: message"``."""

    type_name: str
    message: str

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(type_name, message)
        self.type_name = type_name
        self.message = message

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


class UnknownCacheError(KeyError):
    """No cache of that name was configured (a ``KeyError``); the message lists the configured
    names. ``str(e)`` is the message itself (a plain ``KeyError`` would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()
