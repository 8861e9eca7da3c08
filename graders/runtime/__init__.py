"""What runs inside the untrusted worker process, and what both sides share.

Self-contained: these modules import only the standard library, numpy and jax
(flax on demand), never ``course``, ``graders`` or ``reference``, because the
sandbox copies this folder into the worker's scratch directory as the package
``grader_runtime``; the trusted grader imports the same files as
``graders.runtime`` so that both sides encode messages and apply
transformations with one piece of code.
"""
