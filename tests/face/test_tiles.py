"""Tiles for the small-face pass: they cover the frame, overlap as asked, and stay inside it."""

import pytest

from mfs_fast.face.tiles import tile_boxes, tile_starts


@pytest.mark.parametrize("length, tile, overlap", [(384, 192, 0.25), (216, 192, 0.25), (1920, 960, 0.5),
                                                   (1000, 333, 0.1), (192, 192, 0.25), (100, 192, 0.25)])
def test_tiles_cover_the_length_with_the_overlap_asked_for(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts == sorted(starts)
    assert starts[-1] + min(tile, length) == length  # the last tile is flush with the end
    for a, b in zip(starts, starts[1:]):
        assert tile - (b - a) >= overlap * tile - 1  # neighbours share at least `overlap` (1 px rounding)


def test_tile_boxes_row_by_row_and_clipped_to_small_frames():
    assert tile_boxes(384, 216, 192) == [(0, 0, 192, 192), (96, 0, 192, 192), (192, 0, 192, 192),
                                         (0, 24, 192, 192), (96, 24, 192, 192), (192, 24, 192, 192)]
    assert tile_boxes(256, 144, 192) == [(0, 0, 192, 144), (64, 0, 192, 144)]
    assert tile_boxes(100, 80, 192) == [(0, 0, 100, 80)]
