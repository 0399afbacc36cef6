"""Dataset adapters: one package per data set; params.yaml's `dataset.adapter` picks one.

The worked example is the package next to this file; the README names it.
The contract each adapter fulfils is src/pipeline/adapter.py.
"""
