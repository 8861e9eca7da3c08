"""Exercise package: `encoder_decoder.py` is what you implement; `test_encoder_decoder.py` checks it."""
