"""Engines served by Triton Inference Server: the model repository, the server, the identity.

An engine is an engine, local or served: a served model carries its manifest's identity as
Triton model ``parameters`` (:mod:`engines.serving.identity`), and the client backend
(:mod:`engines.backends.triton`) refuses a model whose identity differs from the local
manifest, exactly as the local runtime refuses a stale file.
"""
