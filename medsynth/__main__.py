from medsynth.cli import _entry

_entry()
