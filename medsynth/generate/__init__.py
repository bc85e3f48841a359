"""medsynth.generate"""
