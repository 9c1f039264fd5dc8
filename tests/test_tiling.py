import pytest

from mllm_retrieval.capture.tiling import Box, grid_boxes, parse_grid
from mllm_retrieval.errors import GridError


def test_default_grid_is_full_image_plus_four_quadrants():
    boxes = grid_boxes(100, 60, "2x2")
    assert boxes == [
        Box(0, 0, 100, 60),
        Box(0, 0, 50, 30), Box(50, 0, 100, 30),
        Box(0, 30, 50, 60), Box(50, 30, 100, 60),
    ]


def test_3x3_covers_the_image_exactly_without_gaps():
    boxes = grid_boxes(101, 77, "3x3")[1:]
    assert len(boxes) == 9
    area = sum((b.x1 - b.x0) * (b.y1 - b.y0) for b in boxes)
    assert area == 101 * 77
    assert {b.x1 for b in boxes} >= {101} and {b.y1 for b in boxes} >= {77}


def test_none_means_full_image_only():
    assert grid_boxes(10, 20, "none") == [Box(0, 0, 10, 20)]
    assert parse_grid("NONE") == (1, 1)


def test_columns_by_rows():
    assert parse_grid("3x2") == (3, 2)
    boxes = grid_boxes(90, 40, "3x2")
    assert len(boxes) == 7 and boxes[1] == Box(0, 0, 30, 20)


def test_overlap_grows_tiles_but_stays_inside_the_image():
    plain = grid_boxes(100, 100, "2x2")[1]
    grown = grid_boxes(100, 100, "2x2", overlap=0.2)[1]
    assert grown.x1 > plain.x1 and grown.y1 > plain.y1
    for box in grid_boxes(100, 100, "3x3", overlap=0.5):
        assert 0 <= box.x0 < box.x1 <= 100 and 0 <= box.y0 < box.y1 <= 100


def test_tiny_images_give_no_empty_tiles():
    for box in grid_boxes(2, 1, "3x3"):
        assert box.x1 > box.x0 and box.y1 > box.y0


@pytest.mark.parametrize("bad", ["2", "axb", "0x2", "9x9", "2x2x2", ""])
def test_invalid_grid_is_a_clear_error(bad):
    with pytest.raises(GridError, match="grid"):
        grid_boxes(10, 10, bad)


def test_invalid_overlap():
    with pytest.raises(GridError, match="overlap"):
        grid_boxes(10, 10, "2x2", overlap=1.5)
