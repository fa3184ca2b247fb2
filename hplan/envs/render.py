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
        self.radius = max(1.0, 0.5 * self.scale)
        span = int(np.ceil(self.radius)) + 1
        dy, dx = np.mgrid[-span:span + 1, -span:span + 1]
        self._patch_dy = dy.reshape(-1)
        self._patch_dx = dx.reshape(-1)
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
        """Draw an anti-aliased disc of ``color`` at each of the ``N`` positions onto ``frames``
        (N, S, S, 3) in place.

        Why anti-aliased: at 64 px a four-rooms cell is ~3.4 px wide and the point moves 0.1–0.4
        cells per step, so a disc snapped to whole pixels often does not move at all between
        frames. Velocity then cannot be read from a frame history and the one-step latent change
        is quantisation noise, which the predictor cannot learn from (measured: the velocity
        probe R² of a two-frame encoder was 0.00). Covering each pixel by the fraction of it
        inside the disc (a linear ramp over one pixel at the rim) makes sub-pixel positions
        visible as intensities, as a camera's pixels would.
        """
        pos = np.asarray(pos, dtype=np.float64).reshape(-1, 2)
        n = pos.shape[0]
        centre = pos * self.scale + self.offset  # continuous (col, row); pixel c spans [c, c + 1)
        base = np.floor(centre).astype(np.int64)
        cols = base[:, 0:1] + self._patch_dx[None, :]
        rows = base[:, 1:2] + self._patch_dy[None, :]
        dist = np.hypot(cols + 0.5 - centre[:, 0:1], rows + 0.5 - centre[:, 1:2])
        alpha = np.clip(self.radius + 0.5 - dist, 0.0, 1.0)
        size = frames.shape[1]
        sel = (alpha > 0) & (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
        frame_idx = np.broadcast_to(np.arange(n)[:, None], sel.shape)[sel]
        r, c, a = rows[sel], cols[sel], alpha[sel][:, None]
        old = frames[frame_idx, r, c].astype(np.float32)
        target = np.asarray(color, dtype=np.float32)
        frames[frame_idx, r, c] = np.rint(old + a * (target - old)).astype(np.uint8)
        return frames
