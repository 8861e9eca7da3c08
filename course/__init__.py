"""Introduction to Transformers with JAX: the student runtime.

Everything a student's install needs and nothing an instructor alone does:
``catalog`` (the exercises), ``submission`` (which code ``exercises`` loads),
``model``, ``data``, ``tokenizer``, ``sharding``, ``train``, ``checkpoint``,
``generate`` (decoding with a key/value cache), ``check`` (``course check``),
``testing`` (helpers of the visible tests), the notebooks and the ``course``
command's student verbs (``cli``). The instructor's packages, ``authoring``
and ``graders``, build on it; it never imports them.
"""

__version__ = "0.1.0"
