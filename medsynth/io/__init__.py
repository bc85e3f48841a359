"""medsynth.io"""
