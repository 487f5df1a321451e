"""Infrastructure every layer may use, with no method code: atomic writes (io), resumable shards
(shards), progress bars (progress), provenance stamps (provenance), device and dtype choice (device),
the warm Jupyter kernel (kernel), and the notebooks' shared helpers (notebook).

May import: nothing from cgd.
"""
