"""Exercise package: `loss.py` is what you implement; `test_loss.py` checks it."""
