"""fastmlp.confidence: the "not sure" threshold and its calibration."""

import numpy as np
import pytest

from fastmlp import confidence


def _probs(confidences, digits):
    """(n, 10) rows whose largest entry is confidences[i] at digits[i]."""
    n = len(confidences)
    probs = np.zeros((n, 10))
    for i, (c, d) in enumerate(zip(confidences, digits)):
        probs[i] = (1 - c) / 9
        probs[i, d] = c
    return probs


def test_verdict_names_the_digit_or_says_not_sure():
    sure = confidence.verdict(_probs([0.95], [7])[0], threshold=0.9)
    assert (sure.digit, sure.sure, sure.text()) == (7, True, "7 (95.0%)")
    unsure = confidence.verdict(_probs([0.6], [3])[0], threshold=0.9)
    assert (unsure.digit, unsure.sure) == (3, False)
    assert unsure.text() == "not sure (best guess 3, 60.0%)"
    # At exactly the threshold the answer is given.
    assert confidence.verdict(_probs([0.9], [1])[0], threshold=0.9).sure


def test_default_threshold_is_the_calibrated_one():
    assert 0.5 < confidence.NOT_SURE_BELOW < 1.0
    just_below = _probs([np.nextafter(confidence.NOT_SURE_BELOW, 0)], [2])[0]
    assert not confidence.verdict(just_below).sure
    assert confidence.verdict(_probs([confidence.NOT_SURE_BELOW], [2])[0]).sure


def test_calibrate_picks_the_lowest_threshold_meeting_the_error_bar():
    # Ten answers, most confident first; wrong ones at confidences 0.7 and 0.5.
    conf = [0.99, 0.98, 0.97, 0.96, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5]
    y = np.arange(10) % 10
    digits = y.copy()
    digits[7] = (y[7] + 1) % 10
    digits[9] = (y[9] + 1) % 10
    probs = _probs(conf, digits)
    # No error allowed: accept down to 0.8 (the 0.7 answer is wrong).
    assert confidence.calibrate(probs, y, max_error=0.0) == 0.8
    # 1 in 8 allowed: the first 8 answers (down to 0.7) have 1 error = 12.5%;
    # adding 0.6 gives 1 in 9 (11%), still fine; 0.5 gives 2 in 10 = 20%.
    assert confidence.calibrate(probs, y, max_error=0.125) == 0.6
    assert confidence.calibrate(probs, y, max_error=0.2) == 0.5


def test_calibrate_never_splits_answers_of_equal_confidence():
    # Two answers at 0.9, one right, one wrong: with no error allowed neither
    # can be accepted, so the threshold stays above 0.9.
    probs = _probs([0.99, 0.9, 0.9], [0, 1, 5])
    y = np.array([0, 1, 2])
    assert confidence.calibrate(probs, y, max_error=0.0) == 0.99
    # Every answer wrong: nothing meets the bar.
    assert confidence.calibrate(_probs([0.9], [1]), np.array([0]), max_error=0.0) == 1.0
    with pytest.raises(ValueError):
        confidence.calibrate(np.zeros((0, 10)), np.zeros(0, int))


def test_rejection_rate_counts_the_not_sure_answers():
    probs = _probs([0.99, 0.5, 0.95, 0.2], [0, 1, 2, 3])
    assert confidence.rejection_rate(probs, threshold=0.9) == 0.5
    assert confidence.rejection_rate(probs, threshold=0.1) == 0.0
