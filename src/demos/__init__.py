"""Demo-source builders: one module per example data set, which fakes its source history (`make source`).

Apart from src/datasets/, which every stage depends on: an adapter names its
builder's module (its `build_demo_source` imports it by name), so editing a
builder reruns no stage.
"""
