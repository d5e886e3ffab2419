"""The config's error type, and the words its messages share."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value a run cannot use; the message names it and what is valid."""


def expected(message: str) -> str:
    """What OmegaConf's "could not be converted to Integer" says, in plain words."""
    if "is not a valid bool" in message:
        return "true or false"
    if "expected one of" in message:
        return "one of " + message.split("expected one of", 1)[1].strip(" []").replace(", ", " | ")
    for kind, words in (("Integer", "an integer"), ("Float", "a number")):
        if message.endswith(f"converted to {kind}"):
            return words
    return f"valid ({message})"


def first_line(error: Exception) -> str:
    text = getattr(error, "msg", None) or str(error)
    return text.splitlines()[0] if text else type(error).__name__
