"""Overlapping square tiles that cover a frame, for finding faces too small for one pass.

A detector with a fixed input (BlazeFace: 192x192) sees a whole 1080p frame shrunk 10x, so a
face 24 px between the eyes becomes 2.4 px and is lost; the same detector on 1/3-frame tiles
sees it 3x larger. Tiles overlap so a face cut by one tile's edge is whole in its neighbour.
"""

from __future__ import annotations

import math

import numpy as np


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering 0..length, neighbours sharing at least
    ``overlap`` of a tile, evenly spread, the last flush with the end."""
    if tile >= length:
        return [0]
    stride = tile * (1.0 - overlap)
    count = 1 + math.ceil((length - tile) / stride)
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_boxes(width: int, height: int, tile: int, overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of the tiles, row by row; a tile is clipped to the frame where the frame
    is smaller than the tile."""
    return [(x, y, min(tile, width), min(tile, height))
            for y in tile_starts(height, tile, overlap) for x in tile_starts(width, tile, overlap)]


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The tile's pixels (a view; no copy)."""
    x, y, w, h = box
    return image[y:y + h, x:x + w]
