"""The grading engine: the trusted pytest process (``grading``, ``plugin``, ``compare``) and its sandboxed worker (``client``, ``sandbox``)."""
