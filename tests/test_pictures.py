"""fastmlp.gui.pictures: the insides' pictures and their geometry, without a display."""

import numpy as np
import pytest

from fastmlp.gui import pictures
from fastmlp.gui.pictures import Grid


def test_grid_hit_test_is_the_inverse_of_its_layout():
    grid = Grid(count=13, columns=5, cell=6, gap=2)
    assert grid.rows == 3 and grid.size == (5 * 8 - 2, 3 * 8 - 2)
    for i in range(grid.count):
        x, y = grid.origin(i)
        assert grid.index_at(x, y) == i and grid.index_at(x + 5, y + 5) == i
        assert grid.index_at(x + 6, y) is None  # the gap to its right
    assert grid.index_at(3 * 8, 2 * 8) is None  # cell 13 does not exist
    assert grid.index_at(-1, 0) is None and grid.index_at(0, 100) is None


def test_diverging_is_white_at_zero_red_above_blue_below():
    colours = pictures.diverging(np.array([-1.0, 0.0, 1.0]))
    blue, white, red = colours.astype(int)
    assert white.min() > 240  # RdBu_r's centre is almost white
    assert red[0] > red[2] + 50 and blue[2] > blue[0] + 50  # dark red (103, 0, 31), dark blue
    # All zeros: white, not a division by zero.
    assert (pictures.diverging(np.zeros(3)) == white).all()


def test_sequential_is_dark_at_zero_and_bright_at_the_top():
    dark, bright = pictures.sequential(np.array([0.0, 2.0])).astype(int)
    assert dark.sum() < 30 and bright.sum() > 500
    assert (pictures.sequential(np.zeros(2)) == dark).all()


def test_each_tile_shows_its_units_weights_at_its_place():
    rng = np.random.default_rng(0)
    W0 = rng.standard_normal((784, 6))
    W0[:, 2] *= 100  # one large unit must not wash the others out
    grid = Grid(6, 3, 28, 2)
    picture = pictures.tiles_picture(W0, grid)
    assert picture.shape == (grid.size[1], grid.size[0], 3)
    for unit in (0, 2, 5):
        x, y = grid.origin(unit)
        tile = W0[:, unit].reshape(28, 28)
        expected = pictures.diverging(tile / np.abs(tile).max(), 1.0)
        np.testing.assert_array_equal(picture[y:y + 28, x:x + 28], expected)


def test_upscaled_tiles_repeat_each_weight():
    W0 = np.random.default_rng(1).standard_normal((784, 2))
    big = pictures.tiles_picture(W0, Grid(2, 2, 56, 0))
    small = pictures.tiles_picture(W0, Grid(2, 2, 28, 0))
    np.testing.assert_array_equal(big[::2, ::2], small)


def test_activation_picture_lights_each_cell_by_its_value():
    grid = Grid(4, 2, 3, 1)
    picture = pictures.activation_picture(np.array([0.0, 1.0, 0.0, 4.0]), grid)
    brightness = [picture[grid.origin(i)[1], grid.origin(i)[0]].astype(int).sum() for i in range(4)]
    assert brightness[0] == brightness[2] < brightness[1] < brightness[3]


def test_saliency_picture_colours_the_gradient_and_darkens_the_ink():
    x = np.zeros(784)
    grad = np.zeros(784)
    grad[0], grad[27] = 1.0, -1.0  # top-left raises, top-right lowers
    x[783] = 1.0  # ink bottom-right
    picture = pictures.saliency_picture(x, grad, 56).astype(int)
    assert picture.shape == (56, 56, 3)
    assert picture[0, 0, 0] > picture[0, 0, 2] + 50  # red
    assert picture[0, 55, 2] > picture[0, 55, 0] + 50  # blue
    assert picture[55, 55].max() < 160 and picture[28, 28].min() > 240  # ink dark, zero white


def test_ppm_is_a_binary_p6_image():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    data = pictures.ppm(rgb)
    assert data.startswith(b"P6 3 2 255\n") and data.endswith(rgb.tobytes())


@pytest.mark.parametrize("count, columns", [(128, 16), (64, 12), (10, 5), (1, 2)])
def test_grids_are_about_twice_as_wide_as_tall(count, columns):
    assert pictures.columns_for(count) == columns
