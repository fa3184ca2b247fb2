"""Offline data: exploration policies, batched env sources, collection, shards and their manifest.

* :mod:`hplan.data.policies` — ``random``, ``momentum``, ``minigrid_explore``, ``expert`` (batched, per-episode seeded)
* :mod:`hplan.data.sources` — PointRooms through ``PointRoomsVec``; other envs in a loop
* :mod:`hplan.data.minigrid_probes` — what exploration reads from MiniGrid's grid (objects ahead, rooms)
* :mod:`hplan.data.collect` — ``collect(scenario, out_dir)``: resumable, deterministic collection
* :mod:`hplan.data.shards` — the on-disk format and ``load_episodes`` for training
* :mod:`hplan.data.manifest` / :mod:`hplan.data.stats` — resume fingerprint; coverage and violation rates
* :mod:`hplan.data.validate` — full scenario validation (``hplan scenario check``)
"""
