"""The Lagrange multiplier of the ``lagrangian`` guardrail mode, adapted once per planning step.

The constraint is "predicted mean violation probability of the executed plan ≤ budget". After
each plan the agent feeds the plan's predicted risk in; the multiplier rises while the planner
keeps choosing riskier plans than the budget allows and relaxes (never below 0) when it does not.
Two update rules: plain dual ascent, and the PID Lagrangian of Stooke et al. (2020), whose
proportional term reacts faster and overshoots less.
"""

from __future__ import annotations

from hplan.planning.config import GuardrailConfig


class LagrangeMultiplier:
    def __init__(self, cfg: GuardrailConfig) -> None:
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.value = float(self.cfg.multiplier_init)
        self.integral = float(self.cfg.multiplier_init)
        self.previous_error = 0.0

    def __call__(self) -> float:
        return self.value

    def update(self, risk: float) -> float:
        """One step towards the budget given the chosen plan's predicted risk; returns λ."""
        cfg = self.cfg
        error = float(risk) - cfg.budget
        if cfg.multiplier_update == "dual":
            self.value = self.value + cfg.lagrangian_lr * error
        else:
            self.integral = max(0.0, self.integral + cfg.lagrangian_lr * error)
            derivative = max(0.0, error - self.previous_error)
            self.value = cfg.pid_kp * error + self.integral + cfg.pid_kd * derivative
            self.previous_error = error
        self.value = min(max(self.value, 0.0), cfg.multiplier_max)
        return self.value
