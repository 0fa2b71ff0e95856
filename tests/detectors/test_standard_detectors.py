"""The standard detector set, the stage-output layer picker and the DNN detector's map cache."""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from medadv_lib.detectors import (
    BU,
    KD,
    KDBU,
    LID,
    DNNDetector,
    GMMDetector,
    Mahalanobis,
    SafetyNetSVM,
    stage_outputs,
    standard_detectors,
)
from medadv_lib.detectors.standard import DETECTOR_NAMES, FEATURE_SPACE
from medadv_lib.models import build_model


def test_standard_detectors_order_types_and_settings():
    dets = standard_detectors(bu_passes=7, dnn_iterations=11, dnn_layers=["block3"], maha_noise=0.001,
                              kd_bandwidth=0.5, lid_k=5, lid_minibatch=30, seed=3)
    assert list(dets) == list(DETECTOR_NAMES)
    expected = {"KD": KD, "LID": LID, "MAHA": Mahalanobis, "GMM": GMMDetector, "BU": BU, "KD+BU": KDBU,
                "DNN": DNNDetector, "SVM": SafetyNetSVM}
    for name, cls in expected.items():
        assert type(dets[name]) is cls
    assert dets["BU"].n_passes == 7 and dets["KD+BU"].n_passes == 7 and dets["BU"].seed == 3
    assert dets["DNN"].n_iter == 11 and dets["DNN"].layers == ["block3"]
    assert dets["MAHA"].noise_magnitude == 0.001 and dets["KD"].bandwidth == 0.5 == dets["KD+BU"].bandwidth
    assert (dets["LID"].k, dets["LID"].minibatch) == (5, 30)
    assert set(FEATURE_SPACE) <= set(DETECTOR_NAMES)
    for det in dets.values():  # unfitted estimators, cloneable
        assert clone(det).get_params() == det.get_params()


def test_standard_detectors_include_and_errors():
    assert list(standard_detectors(include=["SVM", "KD"])) == ["KD", "SVM"]  # display order kept
    assert standard_detectors()["DNN"].layers is None
    with pytest.raises(KeyError, match="standard detectors"):
        standard_detectors(include=["KD", "nope"])
    # fresh objects on every call
    assert standard_detectors()["KD"] is not standard_detectors()["KD"]


def test_stage_outputs():
    resnet = build_model("resnet18", in_channels=1, num_classes=2, image_size=28)
    assert stage_outputs(resnet) == ["layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    small = build_model("smallcnn", in_channels=1, num_classes=2, image_size=28)
    assert stage_outputs(small) == ["block1", "block2", "block3"]
    names = ["block1.relu1", "block1.relu2", "block1", "block2.relu1", "block2", "penultimate"]
    assert stage_outputs(names) == ["block1", "block2"]
    assert stage_outputs(["stem", "penultimate"]) == []


def test_dnn_map_cache_gives_the_same_detector(tiny_model, images):
    x, is_adv = images
    kw = {"n_iter": 6, "batch_size": 8, "width": (4, 4, 4), "seed": 2}
    cached = DNNDetector(**kw).fit(x, is_adv, model=tiny_model)
    plain = DNNDetector(max_cache_mb=0, **kw).fit(x, is_adv, model=tiny_model)
    assert cached.maps_cached_ and not plain.maps_cached_
    np.testing.assert_allclose(cached.loss_curve_, plain.loss_curve_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(cached.decision_function(x, model=tiny_model),
                               plain.decision_function(x, model=tiny_model), rtol=1e-4, atol=1e-6)
    assert not tiny_model.training
    with pytest.raises(NotFittedError):
        clone(cached).decision_function(x, model=tiny_model)
