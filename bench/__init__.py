"""`make bench`: an honest, repeatable benchmark of the pipeline (bench/README.md says what it measures and how)."""
