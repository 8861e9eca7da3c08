"""Exercise package: `transformer.py` is what you implement; `test_transformer.py` checks it."""
