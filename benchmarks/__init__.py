"""medsynth's benchmarks: `python -m benchmarks.run [--quick]` runs them all (results in BENCHMARKS.md)."""
