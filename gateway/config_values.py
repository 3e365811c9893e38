"""Config values before validation: `${VAR}` interpolation and overrides merged into the file's mapping."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["interpolate", "merge", "nested"]

_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str], where: str, warnings: list[str]) -> Any:
    """Replace `${NAME}` / `${NAME:-default}` in string values, so secrets stay out of the YAML file."""
    if isinstance(value, dict):
        return {
            k: interpolate(v, env, f"{where}.{k}" if where else str(k), warnings) for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}.{i}", warnings) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        warnings.append(f"{where}: environment variable {name} is not set; using an empty string")
        return ""

    return _INTERPOLATION.sub(substitute, value)


def merge(base: Any, patch: Any) -> Any:
    """`patch` over `base`: mappings key by key, numbered keys into a list's items, anything else replaces."""
    if isinstance(base, list) and isinstance(patch, dict) and all(str(k).isdigit() for k in patch):
        items = list(base)
        for key, value in patch.items():
            items[int(key)] = merge(items[int(key)], value)
        return items
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = merge(merged[key], value) if key in merged else value
        return merged
    return patch


def nested(path: list[str], value: Any) -> dict[str, Any]:
    """`value` at a key path: ["server", "port"], 80 → {"server": {"port": 80}}."""
    for key in reversed(path[1:]):
        value = {key: value}
    return {path[0]: value}
