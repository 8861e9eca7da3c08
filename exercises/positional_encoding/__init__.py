"""Exercise package: `positional_encoding.py` is what you implement; `test_positional_encoding.py` checks it."""
