"""The adversarial risk (Li, Pan & Zhu, Eq. 2 and 3) against hand counts and a plain formula."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medadv_lib.metrics.risk import adversarial_risk

# Six clean test images and their paired AEs, counted by hand:
#   image  y  clean  clean rejected  adv  adv rejected   cost with g           cost without g
#   0      0  0      no              0    no             0                     0
#   1      1  1      yes             0    yes            1 (clean rejected)    1 (adv wrong)
#   2      1  0      no              0    no             1 + 1                 1 + 1
#   3      0  0      no              1    yes            0 (AE rejected)       1
#   4      2  1      yes             2    no             1 (clean rejected)    1 (clean wrong)
#   5      2  2      no              0    no             1 (accepted, wrong)   1
Y = [0, 1, 1, 0, 2, 2]
CLEAN = [0, 1, 0, 0, 1, 2]
CLEAN_REJ = [False, True, False, False, True, False]
ADV = [0, 0, 0, 1, 2, 0]
ADV_REJ = [False, True, False, True, False, False]


def test_hand_count_with_detector():
    res = adversarial_risk(Y, CLEAN, ADV, clean_rejected=CLEAN_REJ, adv_rejected=ADV_REJ)
    # clean: image 2 accepted and wrong (image 4 is wrong but rejected, so it costs as a rejection)
    assert res.counts["cln_inc"] == 1
    assert res.counts["cln_rej"] == 2
    assert res.counts["adv_inc"] == 2  # images 2 and 5: accepted and misclassified
    assert res.counts["adv_rej"] == 2
    assert res.risk == 5 and res.n == 6
    assert res.r == pytest.approx(5 / 6)


def test_hand_count_without_detector():
    res = adversarial_risk(Y, CLEAN, ADV)
    assert res.counts == {"cln_inc": 2, "cln_rej": 0, "adv_inc": 4, "adv_rej": 0, "n_adv": 6, "with_detector": False}
    assert res.r == pytest.approx(6 / 6)


def test_weights_scale_each_term():
    res = adversarial_risk(Y, CLEAN, ADV, clean_rejected=CLEAN_REJ, adv_rejected=ADV_REJ,
                           w_cln_prd=2.0, w_cln_uad=0.5, w_adv_prd=3.0)
    assert res.risk == pytest.approx(2 * 1 + 0.5 * 2 + 3 * 2)


def test_paper_table2_arithmetic():
    # NT on OCT: 1000 test images, 885 successful AEs, risk without UAD 0.965 -> 80 clean errors
    y = np.zeros(1000, dtype=int)
    clean = np.r_[np.ones(80, dtype=int), np.zeros(920, dtype=int)]
    adv = np.r_[np.ones(885, dtype=int), np.zeros(115, dtype=int)]
    assert adversarial_risk(y, clean, adv).r == pytest.approx(0.965)


def test_bootstrap_interval_brackets_value_and_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    clean = np.where(rng.random(200) < 0.8, y, (y + 1) % 3)
    adv = np.where(rng.random(200) < 0.4, y, (y + 1) % 3)
    rej_c, rej_a = rng.random(200) < 0.1, rng.random(200) < 0.6
    a = adversarial_risk(y, clean, adv, clean_rejected=rej_c, adv_rejected=rej_a, n_boot=300, seed=1)
    b = adversarial_risk(y, clean, adv, clean_rejected=rej_c, adv_rejected=rej_a, n_boot=300, seed=1)
    assert a.ci == b.ci
    assert a.ci[0] < a.r < a.ci[1]
    unpaired = adversarial_risk(y, clean, adv[:150], adv_y=y[:150], n_boot=100)
    assert unpaired.counts["n_adv"] == 150 and unpaired.ci[0] <= unpaired.r <= unpaired.ci[1]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_matches_plain_formula(data):
    n = data.draw(st.integers(1, 40))
    lab = st.lists(st.integers(0, 3), min_size=n, max_size=n)
    flag = st.lists(st.booleans(), min_size=n, max_size=n)
    y, c, a = (np.array(data.draw(lab)) for _ in range(3))
    rc, ra = np.array(data.draw(flag)), np.array(data.draw(flag))
    expected = sum((c[i] != y[i]) and not rc[i] for i in range(n)) + rc.sum() + sum(
        (a[i] != y[i]) and not ra[i] for i in range(n))
    res = adversarial_risk(y, c, a, clean_rejected=rc, adv_rejected=ra)
    assert res.risk == expected
    assert 0 <= res.r <= 2
    # a detector that rejects nothing gives Eq. 3
    none = np.zeros(n, dtype=bool)
    assert adversarial_risk(y, c, a, clean_rejected=none, adv_rejected=none).risk == adversarial_risk(y, c, a).risk


@pytest.mark.parametrize("kwargs, match", [
    ({"clean_rejected": [False] * 6}, "both"),
    ({"adv_y": [0, 1]}, "adv_pred has 6"),
    ({"w_adv_prd": -1}, "w_adv_prd"),
    ({"w_cln_uad": float("nan")}, "w_cln_uad"),
    ({"n_boot": -3}, "n_boot"),
    ({"clean_rejected": [0.5] * 6, "adv_rejected": [False] * 6}, "booleans"),
])
def test_bad_inputs_name_the_argument(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        adversarial_risk(Y, CLEAN, ADV, **kwargs)


def test_bad_label_shapes():
    with pytest.raises(ValueError, match="clean_pred has 2"):
        adversarial_risk(Y, [0, 1], ADV)
    with pytest.raises(TypeError, match="integer"):
        adversarial_risk(np.array(Y, float), CLEAN, ADV)
    with pytest.raises(ValueError, match="empty"):
        adversarial_risk([], [], [])
