"""Values merged into a schema: types converted, unknown keys refused with the nearest valid one, true/false
options strict, each field's range checked."""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from .errors import ConfigError, expected, first_line


def into_schema(schema: type, values: Mapping[str, Any], prefix: str) -> DictConfig:
    """`values` merged into `schema` (types converted, unknown keys refused), then each field's range checked."""
    _check_sections(schema, values, prefix)
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), values)
    except ConfigKeyError as e:
        raise ConfigError(_unknown_key_message(schema, prefix, e.full_key or str(e.key))) from None
    except ValidationError as e:
        key = prefix + (e.full_key or str(e.key))
        value = OmegaConf.select(OmegaConf.create(dict(values)), e.full_key) if e.full_key else None
        raise ConfigError(f"{key}={value!r} is not {expected(first_line(e))}") from None
    _check_ranges(schema, typed, prefix)
    return typed


def _check_sections(schema: type, values: Mapping[str, Any], prefix: str) -> None:
    """A field that holds a group of values (a nested schema) is given a mapping, or null where it may be null."""
    hints = typing.get_type_hints(schema)
    for spec in dataclasses.fields(schema):
        nested = _nested_schema(schema, spec.name)
        if spec.name in values and bool in (hints[spec.name], *typing.get_args(hints[spec.name])):
            _check_bool(f"{prefix}{spec.name}", values[spec.name])
        if nested is None or spec.name not in values:
            continue
        value, key = values[spec.name], f"{prefix}{spec.name}"
        if isinstance(value, Mapping):
            _check_sections(nested, value, f"{key}.")
            continue
        if value is None and type(None) in typing.get_args(typing.get_type_hints(schema)[spec.name]):
            continue
        names = [f.name for f in dataclasses.fields(nested)]
        if len(names) <= 3:
            hint = "write it as {" + ", ".join(f"{name}: VALUE" for name in names) + "}"
        else:
            hint = f"set its keys one by one, e.g. {key}.{names[0]}=VALUE (keys: {', '.join(names)})"
        raise ConfigError(f"{key}={value!r} is not a group of values: {hint}")


def _check_bool(key: str, value: Any) -> None:
    """A true/false option is given true, false or null: OmegaConf would take 2, 'yes' or 'on' as true."""
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not true or false")


def _check_ranges(schema: type, typed: DictConfig, prefix: str) -> None:
    for spec in dataclasses.fields(schema):
        value = typed[spec.name]
        minimum = spec.metadata.get("min")
        if minimum is not None and isinstance(value, int | float) and not (math.isfinite(value) and value >= minimum):
            finite = "a finite number of " if isinstance(value, float) else ""
            raise ConfigError(f"{prefix}{spec.name}={value} must be {finite}at least {minimum}")
        nested = _nested_schema(schema, spec.name)
        if nested is not None and isinstance(value, DictConfig):
            _check_ranges(nested, value, f"{prefix}{spec.name}.")


def _nested_schema(schema: type, name: str) -> type | None:
    """The dataclass that field `name` of `schema` holds (also when it is optional), or None."""
    hint = typing.get_type_hints(schema).get(name)
    for candidate in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _unknown_key_message(schema: type, prefix: str, key: str) -> str:
    *parents, leaf = key.split(".")
    node: type | None = schema
    for parent in parents:  # down to the dataclass that lacks `leaf`
        node = _nested_schema(node, parent) if node is not None else None
    valid = [f.name for f in dataclasses.fields(node)] if node is not None else []
    where = prefix + ".".join(parents) + ("." if parents else "")
    close = difflib.get_close_matches(leaf, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {where}{close[0]}?" if close else ""
    choices = f" (valid keys of {where.rstrip('.') or 'the config'}: {', '.join(valid)})" if valid else ""
    return f"unknown key {where}{leaf}{hint}{choices}"
