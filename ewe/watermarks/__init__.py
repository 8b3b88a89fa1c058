"""Watermarks: the soft nearest-neighbour loss, trigger making, the schemes (EWE, classic, the no-SNNL
ablation) and the geometry diagnostics that show whether triggers and target are entangled.

    snnl.py         soft nearest-neighbour loss, learned temperatures
    triggers.py     raw trigger pools, the in-distribution patch, trigger optimisation, previews
    schemes.py      Scheme objects and the SCHEMES registry the pipeline loops over
    diagnostics.py  within / between distances per layer, PCA / t-SNE projections

Kept free of imports: ``ewe.train`` imports ``watermarks.snnl`` and ``watermarks.schemes`` imports
``ewe.train``, so anything imported here would close a circle.
"""
