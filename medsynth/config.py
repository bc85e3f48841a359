"""Default settings live in ``configs/*.yaml`` (inside the package, linked at the repo root).

``load_config("train")`` reads the packaged default; ``load_config("my.yaml")`` reads a user file
and lays it over the default of the same kind when ``kind`` is given.
"""

from __future__ import annotations

import copy
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


def _packaged(kind: str) -> dict[str, Any]:
    """The packaged default ``configs/<kind>.yaml``. Its ``inherit`` mapping (section -> kind) takes
    whole sections from another packaged default, so a section shared by two commands is written once;
    the file's own keys in such a section are laid over the inherited ones."""
    data = _read_yaml(CONFIG_DIR / f"{kind}.yaml")
    inherit = data.pop("inherit", None) or {}
    for section, other in inherit.items():
        shared = _packaged(other).get(section)
        if not isinstance(shared, dict):
            raise ConfigError(f"inherits section {section!r} from {other}.yaml, which has no such section",
                              CONFIG_DIR / f"{kind}.yaml")
        data[section] = deep_update(shared, data.get(section) or {})
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


def load_config(
    name_or_path: str | Path | dict[str, Any] | None = None,
    kind: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Load a config: the one way every command and API function gets its settings.

    Args:
        name_or_path: a packaged config name (``"train"``), a path to a YAML file, or a dict of
            settings (as a notebook passes them); None gives the default of ``kind``.
        kind: the packaged default to start from (``"train"``, ``"generate"``, ...). Keys of the
            user file that the default lacks are refused, so a typo does not pass silently.
        overrides: settings given on the command line or as keyword arguments, laid over the file.
            A value of None means "not given" and leaves the file's value alone, so a command-line
            option overrides the file only when the user typed it. Keys are dotted
            (``"lora.rank"``) or flat (``"rank"``): a flat key is a top-level setting, or else the
            first section (in the default file's order) that has it.

    Raises:
        ConfigError: the file is missing, not YAML, or has unknown keys; an override names no setting.
    """
    base: dict[str, Any] = {}
    if kind is not None:
        base = _packaged(kind)
    if name_or_path is None:
        cfg = base
    else:
        if isinstance(name_or_path, dict):
            user, path = copy.deepcopy(name_or_path), None
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
        cfg = deep_update(base, user)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set(cfg, key, value, kind)
    return cfg


def _set(cfg: dict[str, Any], key: str, value: Any, kind: str | None) -> None:
    """Set one override (dotted or flat key) in ``cfg``; an unknown key is refused."""
    where = f" in the {kind} config" if kind else ""
    if "." in key:
        section, name = key.split(".", 1)
        if not isinstance(cfg.get(section), dict) or name not in cfg[section]:
            raise ConfigError(f"unknown setting {key!r}{where}")
        cfg[section] = {**cfg[section], name: value}
        return
    if key in cfg and not isinstance(cfg[key], dict):
        cfg[key] = value
        return
    for section, settings in cfg.items():
        if isinstance(settings, dict) and key in settings:
            cfg[section] = {**settings, key: value}
            return
    known = [k for k, v in cfg.items() if not isinstance(v, dict)]
    known += [f"{s}.{k}" for s, v in cfg.items() if isinstance(v, dict) for k in v]
    raise ConfigError(f"unknown setting {key!r}{where}; settings: {', '.join(known)}")


def _unknown_keys(base: dict[str, Any], user: dict[str, Any], prefix: str = "") -> list[str]:
    unknown = []
    for key, value in user.items():
        if key not in base:
            unknown.append(prefix + key)
        elif isinstance(value, dict) and isinstance(base[key], dict) and base[key]:
            unknown += _unknown_keys(base[key], value, prefix + key + ".")
    return unknown
