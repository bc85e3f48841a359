"""medsynth.audit"""
