"""medsynth.models"""
