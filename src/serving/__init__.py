"""Serving the verified model: the input contract, batch predictions and the HTTP service.

Imports no stage and no dvclive.
"""
