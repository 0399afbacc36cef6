"""The reproducible pipeline template: generic stages, serving, tools and dataset adapters.

Imported before numpy or scikit-learn by every `python -m src.<stage>`: libgomp
reads OMP_WAIT_POLICY once, when it loads. With the default busy-wait, two
OpenMP pools sharing two cores (parallel `dvc queue` workers, or any other load)
were measured 30x slower; passive waiting costs nothing when a core is free.
It changes speed only, never results.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
