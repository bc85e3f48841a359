"""medsynth.phantoms"""
