"""One line for any error of composing or checking a config, Hydra's own included."""

from __future__ import annotations

import difflib
import re

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from . import launchers
from .errors import first_line
from .sources import compose


def error_line(error: BaseException, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """One line saying what is wrong, for any error of composing or checking a config with `overrides` (Hydra's
    own included: an unknown entry of a group with the valid ones, an unknown key with the valid keys beside it,
    a malformed override with how to write it)."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, name = error.missing_cfg_file.rpartition("/")
        return f"{group}={name}: there is no such {group} config; valid: {', '.join(error.options)}"
    if isinstance(error, OverrideParseException):
        key, equals, value = error.override.partition("=")
        if not error.override.isascii():
            return (f"override {error.override!r} holds characters that Hydra takes only inside quotes: quote the "
                    f"value, e.g. '{key}=\"{value}\"'")  # fmt: skip
        if not equals:
            return f"override {error.override!r} has no '=': write {key.lstrip('~+')}=VALUE (or ~{key} to remove it)"
        detail = "; ".join(line.strip() for line in error.message.splitlines()[:-1] if line.strip())
        special = sorted({c for c in value if c in SYNTAX_CHARACTERS})
        if special and not value.startswith(("[", "{", "'", '"')):
            shown = " ".join(repr(c) for c in special)
            return (
                f"override {error.override!r}: {shown} in a value {'is' if len(special) == 1 else 'are'} part of "
                f"Hydra's override syntax; quote the value to mean it as written, e.g. '{key}=\"{value}\"'"
                + ("; '~' is not expanded to your home folder: write the full path" if "~" in special else "")
            )
        return (f"override {error.override!r} is malformed ({detail}): write KEY=VALUE, a list as [a,b], a group of "
                "values as {k: v}, and quote a value with spaces or special characters")  # fmt: skip
    text = first_line(error)
    ambiguous = re.match(r"Ambiguous value for argument '([^=']+)=(.*)'", text)
    if ambiguous:  # a comma outside -m: a sweep or a list was meant, or one value that holds a comma
        key, value = ambiguous.groups()
        return (f"override '{key}={value}': a comma makes a sweep (add -m to run one run per value) or, in brackets, "
                f"a list ({key}=[a,b]); for one value that holds a comma, quote it: '{key}=\"{value}\"'")  # fmt: skip
    cause = error.__cause__
    unknown = re.fullmatch(r"Could not override '([^']+)'\.", text)
    of_default_launcher = launchers.about_default_launcher(cause)
    if unknown and isinstance(cause, ConfigKeyError | ConfigAttributeError) and not of_default_launcher:
        return _unknown_override(unknown.group(1), overrides)
    if isinstance(cause, OmegaConfBaseException):
        text = f"{text.rstrip('.')}: {first_line(cause)}"
        if of_default_launcher:
            text += " (the default launcher runs one run after another: choose a launcher first, e.g. " \
                    "hydra/launcher=joblib)"  # fmt: skip
    return text


SYNTAX_CHARACTERS = "()[]{}=,:'\"#~ "  # what Hydra's grammar takes as syntax, not as part of an unquoted value


def _unknown_override(key: str, overrides: list[str] | tuple[str, ...]) -> str:
    """An override of a key the config does not have: the nearest valid key, and those beside it."""
    parent, _, leaf = key.rpartition(".")
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    try:
        node = OmegaConf.select(compose(rest, hydra=key.startswith("hydra.")), parent) if parent else None
    except Exception:  # the other overrides do not compose either: say what is known
        node = None
    if parent and not isinstance(node, DictConfig):
        return f"unknown key {key}: the config has no {parent} (is a group entry missing, e.g. {parent}=NAME?)"
    valid = [str(k) for k in node] if node is not None else []
    close = difflib.get_close_matches(leaf, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {parent}.{close[0]}?" if close else ""
    keys = f" (valid keys of {parent}: {', '.join(valid)})" if valid else ""
    return f"unknown key {key}{hint}{keys}; +{key}=VALUE adds a new key"
