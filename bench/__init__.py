"""`make bench`: an honest, repeatable benchmark of the pipeline (see README, Performance)."""
