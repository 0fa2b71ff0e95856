"""Reader tables: budgets in both papers' notations, percentages, human labels, no index noise."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medadv_lib import formatting as fmt
from medadv_lib.attacks.budget import budget


# ----------------------------------------------------------------------------------------------
# Budgets
# ----------------------------------------------------------------------------------------------

@given(st.integers(1, 256))
def test_budget_on_the_grid_reads_as_k_over_256(k):
    assert fmt.budget_label(budget(k)) == f"{k}/256"
    assert fmt.budget_label(k / 256, "both").startswith(f"{k}/256 (")


@given(st.floats(1e-4, 1.0, allow_nan=False))
def test_absolute_notation_round_trips_to_four_significant_digits(eps):
    shown = fmt.budget_label(eps, "absolute")
    assert math.isclose(float(shown), eps, rel_tol=5e-4)


@given(st.floats(1e-4, 1.0, allow_nan=False))
def test_fraction_notation_is_within_half_a_hundredth_of_k(eps):
    k = float(fmt.budget_label(eps).split("/")[0])
    assert abs(k - eps * 256) <= 0.005 + 1e-9


def test_budget_examples_of_both_papers():
    assert fmt.budget_label(8 / 256) == "8/256"
    assert fmt.budget_label(0.005, "absolute") == "0.005"  # SSAT's PGD budget
    assert fmt.budget_label(0.005) == "1.28/256"  # off the grid: not rounded onto it
    assert fmt.budget_label(2 / 256, "both") == "2/256 (0.007812)"
    assert fmt.budget_label(0.0) == "0" and fmt.budget_label(float("nan")) == fmt.MISSING


@pytest.mark.parametrize("eps, error, match", [
    (8, ValueError, "not a budget on the \\[0, 1\\] pixel scale"),
    (-0.01, ValueError, "pixel scale"),
    (float("inf"), ValueError, "finite"),
    ("8/256", TypeError, "eps must be a real number"),
])
def test_bad_budgets_are_named(eps, error, match):
    with pytest.raises(error, match=match):
        fmt.budget_label(eps)


def test_unknown_notation_lists_the_valid_ones():
    with pytest.raises(ValueError, match="k/256"):
        fmt.budget_label(0.01, "percent")


# ----------------------------------------------------------------------------------------------
# Rates and labels
# ----------------------------------------------------------------------------------------------

@given(st.floats(0.0, 1.0, allow_nan=False))
def test_rate_label_is_the_percentage_rounded(rate):
    shown = fmt.rate_label(rate)
    assert shown.endswith(" %")
    assert abs(float(shown[:-2]) - 100 * rate) <= 0.05 + 1e-9


def test_rate_label_refuses_values_already_in_percent():
    assert fmt.rate_label(0.874) == "87.4 %" and fmt.rate_label(1) == "100.0 %"
    with pytest.raises(ValueError, match="not 87.4"):
        fmt.rate_label(87.4)
    assert fmt.rate_label(1.057, upper=2) == "105.7 %"  # the SSAT risk can exceed 1
    assert fmt.rate_label(None) == fmt.MISSING


def test_human_labels():
    assert fmt.human_label("median_projection_pct_last") == "median projection % last"
    assert fmt.human_label("auroc") == "AUROC" and fmt.human_label("eps") == "budget \u03b5"
    assert fmt.human_label("auroc", {"auroc": "area under ROC"}) == "area under ROC"
    assert fmt.human_label(("chestxray", "tpr90")) == "chestxray TPR at 90 % TNR"


# ----------------------------------------------------------------------------------------------
# Whole tables
# ----------------------------------------------------------------------------------------------

def _results():
    return pd.DataFrame({"dataset": ["chestxray", "cifar10"], "eps": [1 / 256, 8 / 256],
                         "adv_accuracy": [0.125, np.nan], "median_projection_pct_last": [12.3456, 0.5],
                         "n_adv": np.array([40, 12], dtype=np.int64)})


def test_format_frame_turns_a_result_table_into_reader_cells():
    frame = _results()
    before = frame.copy()
    shown = fmt.format_frame(frame, rates=["adv_accuracy"], decimals=2)
    pd.testing.assert_frame_equal(frame, before)  # the input is not modified
    assert list(shown.columns) == ["data set", "budget \u03b5", "accuracy under attack", "median projection % last",
                                   "AEs"]
    assert shown.iloc[0].tolist() == ["chestxray", "1/256", "12.5 %", "12.35", "40"]
    assert shown.iloc[1].tolist() == ["cifar10", "8/256", fmt.MISSING, "0.50", "12"]
    assert isinstance(shown.index, pd.RangeIndex)
    absolute = fmt.format_frame(frame, notation="absolute")
    assert absolute["budget \u03b5"].tolist() == ["0.003906", "0.03125"]


def test_a_meaningful_index_becomes_columns_and_a_default_one_disappears():
    frame = _results().set_index(["dataset", "eps"])
    shown = fmt.format_frame(frame)
    assert list(shown.columns[:2]) == ["data set", "budget \u03b5"] and shown.iloc[1, 1] == "8/256"
    filtered = _results().iloc[[1]]  # index [1], left over from a filter: positions, not data
    assert fmt.format_frame(filtered).columns[0] == "data set" and len(fmt.format_frame(filtered)) == 1
    by_name = pd.DataFrame({"auroc": [0.9, 0.7]}, index=["KD", "LID"])  # string labels are data
    assert fmt.format_frame(by_name).iloc[:, 0].tolist() == ["KD", "LID"]
    pivot = pd.DataFrame({("chestxray", "auroc"): [0.9], ("cifar10", "auroc"): [0.8]})
    assert list(fmt.format_frame(pivot).columns) == ["chestxray AUROC", "cifar10 AUROC"]


def test_format_frame_names_bad_columns():
    with pytest.raises(KeyError, match="rate column\\(s\\) \\['acc'\\]"):
        fmt.format_frame(_results(), rates=["acc"])
    with pytest.raises(ValueError, match="both as budgets and as rates"):
        fmt.format_frame(_results(), budgets=["eps"], rates=["eps"])
    with pytest.raises(ValueError, match="same label"):
        fmt.format_frame(pd.DataFrame({"eps": [0.1], "budget": [0.2]}))
    with pytest.raises(TypeError, match="DataFrame"):
        fmt.format_frame([1, 2])


def test_reader_table_hides_the_index_and_keeps_the_formatted_cells():
    styler = fmt.reader_table(_results(), rates=["adv_accuracy"], caption="Accuracy under BIM")
    html = styler.to_html()
    assert "medadv-table" in html and "Accuracy under BIM" in html and "12.5 %" in html and "1/256" in html
    assert "median_projection_pct_last" not in html
    assert styler.data.iloc[0, 0] == "chestxray"
