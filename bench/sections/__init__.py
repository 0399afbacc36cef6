"""The benchmark's sections, one module each: what each runs and records (bench/README.md says why)."""
