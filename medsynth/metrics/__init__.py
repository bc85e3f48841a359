"""medsynth.metrics"""
