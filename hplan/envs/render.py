"""Fast top-down rendering of PointRooms: a static background plus a stamped agent disc.

Walls and restricted zones never move, so the background image is drawn once per layout and
colour palette; a frame is a copy of it with a small disc stamped at the agent's pixel. The same
code renders one frame or a batch of ``N`` frames with one fancy-indexing write, which is what
makes image observations cheap enough for vectorised data collection. The goal is *not* drawn:
a goal is specified by ``goal_obs``, the observation rendered with the agent at the goal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Color = tuple[int, int, int]


@dataclass(frozen=True)
class Palette:
    """Colours of the top-down image (a factor of variation for appearance shifts)."""

    floor: Color = (235, 235, 235)
    wall: Color = (40, 40, 60)
    restricted: Color = (230, 150, 60)
    agent: Color = (30, 90, 230)
    outside: Color = (0, 0, 0)


class PointRenderer:
    """Renders ``(N, S, S, 3)`` uint8 frames of a wall/zone grid with agents at given positions."""

    def __init__(self, wall: np.ndarray, restricted: np.ndarray, image_size: int = 64,
                 palette: Palette = Palette()) -> None:
        height, width = wall.shape
        self.image_size = int(image_size)
        self.scale = self.image_size / max(height, width)  # pixels per world unit
        self.offset = np.array([(self.image_size - width * self.scale) / 2.0,
                                (self.image_size - height * self.scale) / 2.0])
        self.background = self._background(wall, restricted, palette)
        radius = max(1.0, 0.5 * self.scale)
        span = int(np.ceil(radius))
        dy, dx = np.mgrid[-span:span + 1, -span:span + 1]
        inside = dx * dx + dy * dy <= radius * radius + 1e-9
        self._disc_dy = dy[inside]
        self._disc_dx = dx[inside]
        self._agent = np.array(palette.agent, dtype=np.uint8)

    def _background(self, wall: np.ndarray, restricted: np.ndarray, palette: Palette) -> np.ndarray:
        size = self.image_size
        centres = (np.arange(size) + 0.5)
        cols = np.floor((centres - self.offset[0]) / self.scale).astype(int)
        rows = np.floor((centres - self.offset[1]) / self.scale).astype(int)
        image = np.empty((size, size, 3), dtype=np.uint8)
        image[...] = palette.outside
        valid_r = (rows >= 0) & (rows < wall.shape[0])
        valid_c = (cols >= 0) & (cols < wall.shape[1])
        rr, cc = np.meshgrid(np.where(valid_r)[0], np.where(valid_c)[0], indexing="ij")
        cell_wall = wall[rows[rr], cols[cc]]
        cell_zone = restricted[rows[rr], cols[cc]]
        colours = np.where(cell_wall[..., None], np.array(palette.wall, dtype=np.uint8),
                           np.where(cell_zone[..., None], np.array(palette.restricted, dtype=np.uint8),
                                    np.array(palette.floor, dtype=np.uint8)))
        image[rr, cc] = colours
        image.setflags(write=False)
        return image

    def pixel_of(self, pos: np.ndarray) -> np.ndarray:
        """(N, 2) integer pixel (col, row) of world positions ``pos`` (N, 2)."""
        return np.floor(pos * self.scale + self.offset).astype(np.int64)

    def render(self, pos: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Frames for ``N`` agent positions; writes into ``out`` (N, S, S, 3) when given."""
        pos = np.asarray(pos, dtype=np.float64).reshape(-1, 2)
        n = pos.shape[0]
        if out is None:
            out = np.empty((n, self.image_size, self.image_size, 3), dtype=np.uint8)
        out[...] = self.background
        return self.stamp(out, pos, self._agent)

    def stamp(self, frames: np.ndarray, pos: np.ndarray, color: Color | np.ndarray) -> np.ndarray:
        """Draw a disc of ``color`` at each of the ``N`` positions onto ``frames`` (N, S, S, 3) in place."""
        pos = np.asarray(pos, dtype=np.float64).reshape(-1, 2)
        pixel = self.pixel_of(pos)
        last = frames.shape[1] - 1
        rows = np.clip(pixel[:, 1:2] + self._disc_dy[None, :], 0, last)
        cols = np.clip(pixel[:, 0:1] + self._disc_dx[None, :], 0, last)
        frames[np.arange(pos.shape[0])[:, None], rows, cols] = np.asarray(color, dtype=np.uint8)
        return frames
