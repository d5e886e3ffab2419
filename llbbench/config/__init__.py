"""The run's configuration, a module a job: `sources` (where configs come from, and composing them), `resolvers`
(the `${...}` functions the YAML files use, registered on import of this package), `schema` (the typed run
values and datasets), `coerce` (values into a schema), `ranges` (the valid ranges of group values), `checks`
(`check(cfg)`: every bad value refused before data is loaded), `messages` (one line for any config error) and
`errors` (the error type).

What the rest of llbbench uses is named here.
"""

from __future__ import annotations

from . import resolvers
from .checks import check, folder_options
from .errors import ConfigError
from .messages import error_line
from .schema import DATASET_SCHEMAS
from .sources import (
    CONFIG_ENTRY_POINTS,
    CONFIG_NAME,
    CONFIG_PACKAGE,
    CONFIG_PATH_ENV,
    GROUPS,
    SEARCH_PATH,
    added_group_options,
    compose,
    config_dir,
    group_options,
    search_path,
    user_config_dirs,
    with_search_path,
)

resolvers.register()

__all__ = [
    "CONFIG_ENTRY_POINTS",
    "CONFIG_NAME",
    "CONFIG_PACKAGE",
    "CONFIG_PATH_ENV",
    "DATASET_SCHEMAS",
    "GROUPS",
    "SEARCH_PATH",
    "ConfigError",
    "added_group_options",
    "check",
    "compose",
    "config_dir",
    "error_line",
    "folder_options",
    "group_options",
    "search_path",
    "user_config_dirs",
    "with_search_path",
]
