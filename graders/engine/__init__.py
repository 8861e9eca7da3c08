"""The grading engine: the trusted pytest process (``grading``, ``plugin``, ``compare``, ``scan``) and its sandboxed worker (``client``, ``sandbox``)."""
