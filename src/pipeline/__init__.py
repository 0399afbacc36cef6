"""The generic pipeline: the four stages, the model, the params schema, files, the artifact and the source contract."""
