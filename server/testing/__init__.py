"""Aids shared by the tests and the engine benchmarks (`benchmarks/`), installed with
the package so that neither has to import the other through `sys.path`.

The server never imports this package. `tiny_models` builds the tiny random-weight
PRMs (it needs torch and transformers: the cpu or gpu extra).
"""
