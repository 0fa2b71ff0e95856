import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medadv_lib.defenses.split import semi_supervised_split


def test_balanced_disjoint_and_seeded():
    y = np.repeat([0, 1, 2, 3], [500, 300, 80, 1000])
    s = semi_supervised_split(y, 400, 100, seed=0)
    assert len(s.labelled) == 400 and len(s.unlabelled) == 100
    assert not set(s.labelled) & set(s.unlabelled)
    lab = s.counts["labelled"]
    assert lab[2] == 80 and sum(lab) == 400 and max(lab) - min(lab[:2] + lab[3:]) <= 1
    again = semi_supervised_split(y, 400, 100, seed=0)
    assert np.array_equal(s.labelled, again.labelled) and np.array_equal(s.unlabelled, again.unlabelled)
    assert not np.array_equal(s.labelled, semi_supervised_split(y, 400, 100, seed=1).labelled)


def test_scarce_class_gives_all_it_has():
    y = np.repeat([0, 1, 2], [1000, 1000, 30])
    s = semi_supervised_split(y, 300, 60, seed=0)
    assert s.counts["labelled"] == [135, 135, 30]
    assert s.counts["unlabelled"] == [30, 30, 0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=10, max_size=200), st.integers(0, 2**16))
def test_sizes_disjoint_and_as_equal_as_possible(labels, seed):
    y = np.array(labels)
    n_lab = max(2, len(y) // 2)
    n_unl = (len(y) - n_lab) // 2
    s = semi_supervised_split(y, n_lab, n_unl, seed=seed)
    assert len(s.labelled) == n_lab and len(s.unlabelled) == n_unl
    assert not set(s.labelled) & set(s.unlabelled)
    counts = np.bincount(y[s.labelled], minlength=5)
    available = np.bincount(y, minlength=5)
    # a class below the largest count must have been exhausted
    for c in range(5):
        if counts[c] < counts.max() - 1:
            assert counts[c] == available[c]


@pytest.mark.parametrize("args, match", [((1, 0), "n_labelled must be >= 2"), ((90, 20), "exceeds"),
                                         ((10, -1), "n_unlabelled"), ((2.5, 0), "n_labelled")])
def test_bad_sizes(args, match):
    with pytest.raises(ValueError, match=match):
        semi_supervised_split(np.zeros(100, int), *args)
