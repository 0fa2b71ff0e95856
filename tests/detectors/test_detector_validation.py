"""Clear errors for mismatched dimensions, empty inputs, NaN features and unknown layers."""
import numpy as np
import pytest
import torch

from medadv_lib.detectors import BU, KD, LID, DNNDetector, GMMDetector, Mahalanobis, SafetyNetSVM, extract_features
from medadv_lib.models import build_model

PEN = "penultimate"


@pytest.fixture
def fitted(feats):
    return {
        "KD": KD().fit(feats["train"], feats["y_train"]),
        "GMM": GMMDetector().fit(feats["train"], feats["y_train"]),
        "SVM": SafetyNetSVM().fit(feats["fit"], feats["fit_adv"]),
        "LID": LID(k=5, minibatch=30).fit(feats["fit"], feats["fit_adv"], X_ref=feats["train"]),
        "MAHA": Mahalanobis().fit(feats["fit"], feats["fit_adv"], X_ref=feats["train"], y_ref=feats["y_train"]),
    }


@pytest.mark.parametrize("name", ["KD", "GMM", "SVM"])
def test_mismatched_feature_dimension(fitted, name, feats):
    X = feats["test"][PEN][:, :8]  # fitted on 16-d, scored on 8-d
    args = (X, feats["test_pred"]) if name in ("KD", "GMM") else (X,)
    with pytest.raises(ValueError, match="8 features but the detector was fitted on 16"):
        fitted[name].decision_function(*args)


@pytest.mark.parametrize("name", ["LID", "MAHA"])
def test_mismatched_layer_dimension_and_missing_layer(fitted, name, feats):
    X = dict(feats["test"])
    X["block2"] = X["block2"][:, :5]
    with pytest.raises(ValueError, match=r"\['block2'\] has 5 features but the detector was fitted on 12"):
        fitted[name].decision_function(X)
    with pytest.raises(KeyError, match="available layers"):
        fitted[name].decision_function({k: v for k, v in feats["test"].items() if k != "block1"})


def test_empty_inputs(feats):
    with pytest.raises(ValueError, match="empty"):
        KD().fit(np.empty((0, 16)), np.empty(0, int))
    with pytest.raises(ValueError, match="empty"):
        LID().fit(X_ref={})
    det = KD().fit(feats["train"], feats["y_train"])
    with pytest.raises(ValueError, match="empty"):
        det.decision_function(np.empty((0, 16)), np.empty(0, int))


def test_nan_features(feats):
    X = feats["train"][PEN].copy()
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        KD().fit(X, feats["y_train"])
    with pytest.raises(ValueError, match="NaN"):
        Mahalanobis().fit(X_ref={"penultimate": X}, y_ref=feats["y_train"])
    det = SafetyNetSVM().fit(feats["fit"], feats["fit_adv"])
    Q = feats["test"][PEN].copy()
    Q[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        det.decision_function(Q)


def test_unknown_layers(feats, tiny_model):
    with pytest.raises(KeyError, match="available layers"):
        LID(layers=["nope"]).fit(X_ref=feats["train"])
    with pytest.raises(KeyError, match="block1"):
        Mahalanobis(layers=["block9"]).fit(X_ref=feats["train"], y_ref=feats["y_train"])
    with pytest.raises(KeyError, match="available"):
        KD(layer="block7").fit(feats["train"], feats["y_train"])
    with pytest.raises(KeyError, match="this model has"):
        extract_features(tiny_model, torch.rand(2, 1, 8, 8), ["nope"])
    with pytest.raises(KeyError, match="this model has"):
        DNNDetector(layers=["nope"], n_iter=1).fit(torch.rand(4, 1, 8, 8), [0, 1, 0, 1], model=tiny_model)


def test_label_errors(feats):
    X = feats["train"][PEN]
    with pytest.raises(ValueError, match="labels but the features have"):
        KD().fit(X, feats["y_train"][:-1])
    with pytest.raises(TypeError, match="integers"):
        KD().fit(X, feats["y_train"] + 0.5)
    det = KD().fit(X, feats["y_train"])
    with pytest.raises(ValueError, match="without training features"):
        det.decision_function(X[:3], [0, 1, 7])
    with pytest.raises(ValueError, match="single class"):
        SafetyNetSVM().fit(X, np.zeros(len(X), int))
    with pytest.raises(ValueError, match="0 \\(normal\\) and 1"):
        SafetyNetSVM().fit(X, np.full(len(X), 2))


def test_hyper_parameter_errors(feats):
    with pytest.raises(ValueError, match="k < minibatch"):
        LID(k=20, minibatch=20).fit(X_ref=feats["train"])
    with pytest.raises(ValueError, match="exceeds"):
        LID(k=5, minibatch=1000).fit(X_ref=feats["train"])
    with pytest.raises(ValueError, match="bandwidth"):
        KD(bandwidth=0).fit(feats["train"], feats["y_train"])
    with pytest.raises(ValueError, match="fpr"):
        KD().fit(feats["train"], feats["y_train"]).calibrate(feats["clean"], feats["clean_pred"], fpr=1.5)


def test_multi_layer_without_combiner(feats):
    det = LID(k=5, minibatch=30).fit(X_ref=feats["train"])
    with pytest.raises(ValueError, match="no combiner"):
        det.decision_function(feats["test"])
    assert det.layer_scores(feats["test"]).shape == (len(feats["test_adv"]), 3)


def test_model_detectors_need_model_and_dropout(feats, tiny_model):
    no_dropout = build_model("smallcnn", in_channels=1, num_classes=2, image_size=8, dropout=0.0)
    with pytest.raises(ValueError, match="dropout"):
        BU().fit(model=no_dropout)
    with pytest.raises(ValueError, match="model="):
        BU().fit(model=None)
    det = Mahalanobis(noise_magnitude=0.001).fit(X_ref=feats["train"], y_ref=feats["y_train"])
    with pytest.raises(ValueError, match="model="):
        det.layer_scores(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="looks like images"):
        Mahalanobis().fit(X_ref=feats["train"], y_ref=feats["y_train"]).layer_scores(torch.rand(2, 1, 8, 8))
