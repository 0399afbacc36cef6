"""The generic pipeline: the stages, the model, the params schema, files, the artifact and the source contract."""

from src.pipeline.lifetime import follow_dvc as _follow_dvc

# Every stage starts here. Under DVC it then dies with the `dvc` process that
# runs it, so a killed `dvc` leaves no orphan writing outputs that dvc.lock does
# not record (src/pipeline/lifetime.py); anywhere else this does nothing.
_follow_dvc()
