"""``python -m medsynth`` runs the CLI (the guard keeps spawned worker processes from re-running it)."""

if __name__ == "__main__":
    from medsynth.cli import _entry

    _entry()
