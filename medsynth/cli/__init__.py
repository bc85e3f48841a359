"""The ``medsynth`` command line: a thin layer over the Python API.

Each command lives in its own module here (one per stage of the data flow) and registers itself on
the shared typer ``app``; modules are discovered, so adding a command touches no other file.
Bad input (any :class:`~medsynth.errors.MedsynthError`, a missing or unreadable file) ends with a
one-line message and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from rich.console import Console

from medsynth.cli._app import EXIT_BAD_INPUT, EXIT_OK, app, state
from medsynth.errors import MedsynthError

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a check failed, 2 bad input)."""
    args = sys.argv[1:] if argv is None else list(argv)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        rv = app(args=args, prog_name="medsynth", standalone_mode=False)
    except SystemExit as e:  # typer.Exit / click usage errors
        return int(e.code or 0)
    except (MedsynthError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        if state["debug"] or "--debug" in args:
            raise
        err.print(f"[bold red]error:[/] {e}", markup=True)
        return EXIT_BAD_INPUT
    except Exception as e:
        # typer bundles its own copy of click, so its exceptions are matched by behaviour:
        # Exit carries a code; usage errors can show themselves and carry a code.
        import typer

        if isinstance(e, typer.Exit):
            return e.exit_code
        if isinstance(e, typer.Abort):
            err.print("aborted")
            return 130
        show, code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        raise
    # One convention: a command returns on success, raises typer.Exit(EXIT_CHECK_FAILED) when a check
    # fails, and raises a MedsynthError on bad input. click hands typer.Exit's code back as a value
    # in non-standalone mode.
    return rv if isinstance(rv, int) else EXIT_OK


def _entry() -> None:
    sys.exit(main())
