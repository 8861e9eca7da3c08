"""Introduction to Transformers with JAX: the course's shared code and tools.

Modules: ``catalog`` (the exercises), ``submission`` (which code ``exercises``
loads), ``check`` (``course check``), ``stubs`` and ``fixtures`` (made from
``reference/``), ``testing`` (helpers of the visible tests), ``cli`` (the
``course`` command).
"""

__version__ = "0.1.0"
