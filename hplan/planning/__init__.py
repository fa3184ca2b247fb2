"""Planners in latent space. This package never imports ``hplan.envs``: a planner sees
observations (already encoded) and its world model only, which keeps ground truth out of the loop.

Module map (one job each):

* ``protocol``     — the ``WorldModel`` vocabulary planners depend on (encode / predict / ...).
* ``config``       — ``PlannerConfig`` / ``GuardrailConfig`` ([planner] / [guardrails] sections).
* ``types``        — ``SearchSpace``, ``Evaluation``, ``PlanResult`` and the shared ranking rule.
* ``gaussian``     — CEM and MPPI (one sampler, a table of update rules; coloured noise).
* ``gradient``     — Adam on the action sequence through the differentiable predictor.
* ``discrete``     — categorical CEM for discrete actions (one-hot to the model).
* ``registry``     — optimisers by name (``make_optimizer``).
* ``energy``       — task cost + guardrail cost (off / penalty / hard / lagrangian), chunked.
* ``lagrangian``   — the adaptive multiplier (dual ascent or PID).
* ``budget``       — predictor-evaluation budgets for fair flat vs hierarchical comparisons.
* ``mpc``          — receding-horizon wrapper with warm starts.
* ``hierarchical`` — the flat baseline and the two-level planner.
* ``surprise``     — running z-score of the latent prediction error.
* ``agent``        — ``make_agent`` / ``LatentAgent`` / ``PlanInfo`` (the runner's contract).
* ``analytic``     — exact protocol models with known answers, for tests.
"""
