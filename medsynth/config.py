"""Default settings live in ``configs/*.yaml`` (inside the package, linked at the repo root).

``load_config("train")`` reads the packaged default; ``load_config("my.yaml")`` reads a user file
and lays it over the default of the same kind when ``kind`` is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from medsynth.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError("config file not found", path) from e
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML ({e})", path) from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("a config file must hold a mapping of settings", path)
    return data


def deep_update(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``extra`` laid over it, recursing into nested mappings."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def load_config(name_or_path: str | Path | dict[str, Any] | None = None, kind: str | None = None) -> dict[str, Any]:
    """Load a config.

    Args:
        name_or_path: a packaged config name (``"train"``), a path to a YAML file, or a dict of
            settings (as a notebook passes them); None gives the default of ``kind``.
        kind: the packaged default to start from (``"train"``, ``"generate"``, ...). Keys of the
            user file that the default lacks are refused, so a typo does not pass silently.

    Raises:
        ConfigError: the file is missing, not YAML, or has unknown keys.
    """
    base: dict[str, Any] = {}
    if kind is not None:
        base = _read_yaml(CONFIG_DIR / f"{kind}.yaml")
    if name_or_path is None:
        return base
    if isinstance(name_or_path, dict):
        user, path = name_or_path, None
    else:
        path = Path(name_or_path)
        if not path.suffix and not path.exists():
            path = CONFIG_DIR / f"{name_or_path}.yaml"
        user = _read_yaml(path)
    if kind is not None:
        unknown = _unknown_keys(base, user)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)} in the {kind} config; known: {', '.join(base)}", path
            )
    return deep_update(base, user)


def _unknown_keys(base: dict[str, Any], user: dict[str, Any], prefix: str = "") -> list[str]:
    unknown = []
    for key, value in user.items():
        if key not in base:
            unknown.append(prefix + key)
        elif isinstance(value, dict) and isinstance(base[key], dict) and base[key]:
            unknown += _unknown_keys(base[key], value, prefix + key + ".")
    return unknown
