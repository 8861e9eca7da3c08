"""Exercise package: `training.py` is what you implement; `test_training.py` checks it."""
