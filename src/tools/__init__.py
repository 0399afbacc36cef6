"""Tools around the pipeline: categories, ingest, demo source, data versions, verify, doctor and working clones."""
