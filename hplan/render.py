"""Render a replayed episode as a GIF, so a person can watch what the planner did.

Frames are drawn during the actions replay (:func:`hplan.replay.replay_actions`), so what is drawn
is what the env re-executed, not what the log claims. PointRooms frames are drawn from the map:
walls, restricted zones (orange), the goal and its tolerance (green), the trajectory so far, the
agent (red ring on a violating step) and a marker with the subgoal index wherever the planner
switched to a new subgoal. Subgoals are latents and cannot be decoded to positions, so the marker
shows *where the agent was* when it adopted subgoal ``#k``. Other envs use ``env.render()``
(``rgb_array``) or an image observation, with the same caption line: step, subgoal index,
predicted guardrail probabilities and real violations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from hplan.io import atomic_path
from hplan.runner.loop import StepRecord

FRAME_SIZE = 320
CAPTION_HEIGHT = 28
TRAIL = (60, 60, 200)
GOAL = (40, 170, 60)
SUBGOAL = (200, 40, 180)
VIOLATION = (220, 30, 30)
LABEL_SPACING = 18.0
"""Pixels between subgoal-index labels."""


class EpisodeRenderer:
    """A frame hook for :func:`hplan.replay.replay_actions` that collects GIF frames."""

    def __init__(self, size: int = FRAME_SIZE, max_steps: int | None = None) -> None:
        self.size = int(size)
        self.max_steps = max_steps
        self.frames: list[np.ndarray] = []
        self.trail: list[tuple[float, float]] = []
        self.switches: list[tuple[tuple[float, float], int]] = []
        self._last_index: int | None = None
        self._map: Any = None

    # -- frame hook -----------------------------------------------------------------------------
    def __call__(self, env: Any, obs: Any, info: dict[str, Any], step: StepRecord | None) -> None:
        base = env.unwrapped
        pos = info.get("pos")
        if pos is not None:
            self.trail.append((float(pos[0]), float(pos[1])))
        index = None if step is None else step.plan.get("subgoal_index")
        if index is not None and index >= 0 and index != self._last_index and pos is not None:
            self.switches.append(((float(pos[0]), float(pos[1])), int(index)))
        self._last_index = index if index is not None else self._last_index
        world = getattr(base, "world", None)
        if world is not None and hasattr(world, "layout"):
            image = self._point_rooms_frame(world, info, step)
        else:
            image = self._generic_frame(env, obs)
        self.frames.append(self._with_caption(image, info, step))

    # -- drawing --------------------------------------------------------------------------------
    def _point_rooms_frame(self, world: Any, info: dict[str, Any], step: StepRecord | None) -> Image.Image:
        if self._map is None:
            from hplan.envs.render import PointRenderer

            renderer = PointRenderer(world.layout.wall, world.restricted, self.size, world.palette)
            self._map = (renderer, Image.fromarray(np.asarray(renderer.background)))
        renderer, background = self._map
        image = background.copy()
        draw = ImageDraw.Draw(image)
        scale = renderer.scale

        def px(point: Any) -> tuple[float, float]:
            xy = np.asarray(point, dtype=np.float64) * scale + renderer.offset
            return float(xy[0]), float(xy[1])

        goal = info.get("goal")
        if goal is not None:
            gx, gy = px(goal)
            r = max(3.0, float(getattr(world, "goal_tolerance", 0.5)) * scale)
            draw.ellipse((gx - r, gy - r, gx + r, gy + r), outline=GOAL, width=2)
            draw.ellipse((gx - 3, gy - 3, gx + 3, gy + 3), fill=GOAL)
        if len(self.trail) > 1:
            draw.line([px(p) for p in self.trail], fill=TRAIL, width=2)
        labelled: list[tuple[float, float]] = []
        for point, index in self.switches:
            x, y = px(point)
            draw.polygon([(x, y - 4), (x + 4, y), (x, y + 4), (x - 4, y)], fill=SUBGOAL)
            # Label a switch only when it is clear of earlier labels (frequent replans crowd a path).
            if all((x - lx) ** 2 + (y - ly) ** 2 >= LABEL_SPACING ** 2 for lx, ly in labelled):
                draw.text((x + 6, y - 6), f"#{index}", fill=SUBGOAL)
                labelled.append((x, y))
        if self.trail:
            x, y = px(self.trail[-1])
            r = max(3.0, 0.4 * scale)
            violating = step is not None and step.cost > 0
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(world.palette.agent),
                         outline=VIOLATION if violating else None, width=3 if violating else 0)
        return image

    def _generic_frame(self, env: Any, obs: Any) -> Image.Image:
        array = None
        if getattr(env, "render_mode", None) == "rgb_array":
            array = env.render()
        if array is None:
            image_obs = obs.get("image") if isinstance(obs, dict) else obs
            image_obs = np.asarray(image_obs)
            if image_obs.ndim == 3 and image_obs.shape[-1] == 3:
                array = image_obs
        if array is None:
            return Image.new("RGB", (self.size, self.size), (235, 235, 235))
        image = Image.fromarray(np.asarray(array, dtype=np.uint8))
        return image.resize((self.size, self.size), Image.NEAREST)

    def _with_caption(self, image: Image.Image, info: dict[str, Any], step: StepRecord | None) -> np.ndarray:
        canvas = Image.new("RGB", (self.size, self.size + CAPTION_HEIGHT), (255, 255, 255))
        canvas.paste(image.convert("RGB"), (0, CAPTION_HEIGHT))
        draw = ImageDraw.Draw(canvas)
        draw.text((4, 2), caption(step, self.max_steps), fill=(0, 0, 0))
        if step is not None and step.cost > 0:
            names = ", ".join(k for k, v in step.violations.items() if v)
            draw.text((4, 14), f"VIOLATION: {names}", fill=VIOLATION)
        elif step is not None and step.success:
            draw.text((4, 14), "goal reached", fill=GOAL)
        return np.asarray(canvas)

    # -- output ---------------------------------------------------------------------------------
    def write_gif(self, path: str | Path, fps: float = 10.0) -> Path:
        """Write the collected frames as a looping GIF, atomically."""
        import imageio.v2 as imageio

        if not self.frames:
            raise ValueError("no frames to write")
        path = Path(path)
        with atomic_path(path) as tmp:
            imageio.mimsave(tmp, self.frames, format="GIF", duration=1000.0 / fps, loop=0)
        return path


def caption(step: StepRecord | None, max_steps: int | None = None) -> str:
    """One caption line: step, subgoal index and the planner's predicted guardrail probabilities."""
    if step is None:
        return "reset"
    budget = f"/{max_steps}" if max_steps else ""
    parts = [f"t={step.t + 1}{budget}"]
    index = step.plan.get("subgoal_index")
    if index is not None and index >= 0:
        parts.append(f"subgoal #{index}")
    probs = step.plan.get("guardrail_probs") or {}
    if probs:
        parts.append(" ".join(f"p({_abbrev(k)})={v:.2f}" for k, v in probs.items()))
    return "  ".join(parts)


def _abbrev(name: str) -> str:
    return {"wall_contact": "wall", "restricted_zone": "zone", "contact_force": "force",
            "forbidden_zone": "zone"}.get(name, name)
