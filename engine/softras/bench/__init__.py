"""The benchmarks behind ``softras bench``, kept apart from the runtime modules.

* :mod:`softras.bench.raster`: the sparse rasterizer against a dense reference, time and peak memory.
* :mod:`softras.bench.pipeline`: training step, training inputs, weight loading, reconstruction, refinement, bake.
* :mod:`softras.bench.dense_reference`: every face at every pixel, the oracle of the raster tests and benchmark.
"""
