"""The reference solutions: a complete submission, shaped like ``exercises/``. Hidden from students."""
