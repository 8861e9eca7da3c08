"""Exercise package: `attention.py` is what you implement; `test_attention.py` checks it."""
