"""Exercise package: `jax_basics.py` is what you implement; `test_jax_basics.py` checks it."""
