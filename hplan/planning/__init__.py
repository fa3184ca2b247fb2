"""Planners in latent space. This package never imports ``hplan.envs``: a planner sees
observations (already encoded) and its world model only, which keeps ground truth out of the loop."""
