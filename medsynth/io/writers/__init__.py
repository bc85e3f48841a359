"""medsynth.io.writers"""
