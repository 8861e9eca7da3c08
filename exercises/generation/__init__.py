"""Exercise package: `generation.py` is what you implement; `test_generation.py` checks it."""
