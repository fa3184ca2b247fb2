"""The shared vocabulary below models, planning, data and the runner.

* :mod:`hplan.vocabulary.protocol` — ``ActionSpec`` and the ``WorldModel`` protocol through which a
  planner sees a model (``encode / predict / heads / temporal_distance``);
* :mod:`hplan.vocabulary.frames` — frame histories: how the last ``h`` observations are stacked
  for an encoder, in training windows and online.

Nothing here imports from the packages above it, so each of them can depend on it without a cycle.
"""
