"""The METHODS.md section 4 protocol on a tiny trained smallcnn with synthetic images."""
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from medadv_lib.detectors import BU, KD, KDBU, LID, DNNDetector, GMMDetector, Mahalanobis, SafetyNetSVM
from medadv_lib.metrics import DetectionProtocol, evaluate_detectors, result_columns
from medadv_lib.models import build_model

FLIPPED = 6  # test labels flipped on purpose: the model gets them "wrong", the protocol must drop them


def _images(n, g):
    y = torch.randint(0, 2, (n,), generator=g)
    x = (0.42 + 0.16 * y.float()[:, None, None, None] + 0.12 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1)
    return x, y


@pytest.fixture(scope="module")
def setup():
    g = torch.Generator().manual_seed(0)
    x_train, y_train = _images(160, g)
    x_test, y_test = _images(90, g)
    torch.manual_seed(0)
    model = build_model("smallcnn", in_channels=1, num_classes=2, image_size=8, dropout=0.3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        idx = torch.randint(0, 160, (32,), generator=g)
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    y_test = y_test.clone()
    y_test[:FLIPPED] = 1 - y_test[:FLIPPED]
    return model, x_train, y_train, x_test, y_test


def make_bim(model, eps=0.1, steps=5):
    """A tiny BIM of our own (the attacks package is tested elsewhere); targeted when target= is given."""
    def attack(x, y, target=None):
        x_adv = x.clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            logits = model(x_adv)
            loss = F.cross_entropy(logits, y) if target is None else -F.cross_entropy(logits, target)
            grad, = torch.autograd.grad(loss, x_adv)
            x_adv = (x + (x_adv.detach() + eps / 4 * grad.sign() - x).clamp(-eps, eps)).clamp(0, 1)
        return x_adv.detach()
    return attack


def cheap_detectors():
    return {"KD": KD(), "BU": BU(n_passes=5), "LID": LID(k=5, minibatch=30), "MAHA": Mahalanobis(),
            "SVM": SafetyNetSVM(), "GMM": GMMDetector(reg_covar=1e-3)}


@pytest.fixture(scope="module")
def protocol(setup):
    model, x_train, y_train, x_test, y_test = setup
    return DetectionProtocol(model, cheap_detectors(), n_boot=50, seed=3).prepare(x_train, y_train, x_test, y_test)


def test_only_correctly_classified_images_are_used(setup, protocol):
    model, _, _, x_test, y_test = setup
    with torch.no_grad():
        pred = model(x_test).argmax(1).numpy()
    np.testing.assert_array_equal(protocol.kept_, np.flatnonzero(pred == y_test.numpy()))
    assert 0 < protocol.kept_.size < len(y_test)
    assert not set(range(FLIPPED)) & set(protocol.kept_[pred[protocol.kept_] != y_test.numpy()[protocol.kept_]])
    assert protocol.test_accuracy_ == protocol.kept_.size / len(y_test)


def test_noisy_set(setup, protocol):
    clean, noisy = protocol.clean_.images, protocol.noisy_.images
    diff = (noisy - clean).abs()
    assert diff.max() <= 2 / 256 + 1e-7 and diff.max() > 1 / 256
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert not torch.equal(noisy, clean)


def test_split_by_image_and_only_successful(setup, protocol):
    model = setup[0]
    table = protocol.evaluate(make_bim(model), attack_name="BIM", dataset="synthetic", eps=0.1)
    fit, test = protocol.split_["fit"], protocol.split_["test"]
    assert not set(fit) & set(test), "an image on both sides of the split"
    assert set(fit) | set(test) <= set(protocol.kept_)
    # only successful attacks are used
    assert set(protocol.fitted_) == set(cheap_detectors())
    success_rate = table["attack_success_rate"].iloc[0]
    assert len(fit) + len(test) == round(success_rate * protocol.kept_.size)
    # held-out scores are exactly the clean/noisy/adversarial triplets of the test side
    s = protocol.scores_[protocol.scores_.detector == "KD"]
    for kind in ("clean", "noisy", "adv"):
        assert sorted(s[s.kind == kind]["index"]) == sorted(test)
    assert (s.is_adv == (s.kind == "adv")).all()
    # the same side assignment is reused by another attack / budget
    side = dict(zip(protocol.kept_, protocol.fit_side_))
    protocol.evaluate(make_bim(model, eps=0.2), attack_name="BIM", eps=0.2)
    assert all(side[i] for i in protocol.split_["fit"]) and not any(side[i] for i in protocol.split_["test"])


def test_nothing_fitted_on_scored_data(setup, protocol):
    protocol.evaluate(make_bim(setup[0]), attack_name="BIM")
    n_fit = len(protocol.split_["fit"])
    kd = protocol.fitted_["KD"]
    train_pen = protocol.train_.layers["penultimate"]
    for c, kde in kd.kdes_.items():  # class statistics = clean training features
        np.testing.assert_array_equal(np.asarray(kde.tree_.data), train_pen[protocol.train_.labels == c])
    maha = protocol.fitted_["MAHA"]
    np.testing.assert_allclose(maha.class_means_["penultimate"][1], train_pen[protocol.train_.labels == 1].mean(0))
    # supervised parts saw the fitting triplets only (clean + noisy + adversarial)
    assert protocol.fitted_["LID"].combiner_[0].n_samples_seen_ == 3 * n_fit
    assert maha.combiner_[0].n_samples_seen_ == 3 * n_fit
    assert protocol.fitted_["SVM"].svc_.shape_fit_[0] == 3 * n_fit
    assert set(protocol.fitted_["LID"].reference_index_.ravel()) <= set(range(len(protocol.train_)))


def test_all_successful_false_uses_every_kept_triplet(setup):
    model, x_train, y_train, x_test, y_test = setup
    proto = DetectionProtocol(model, {"KD": KD()}, only_successful=False, split=0.7, n_boot=20)
    table = proto.prepare(x_train, y_train, x_test, y_test).evaluate(make_bim(model, eps=0.02), attack_name="BIM")
    n = proto.kept_.size
    assert len(proto.split_["fit"]) == round(0.7 * n) and len(proto.split_["test"]) == n - round(0.7 * n)
    assert table.loc[0, "n_adv"] == n - round(0.7 * n) and table.loc[0, "n_normal"] == 2 * table.loc[0, "n_adv"]


def test_smoke_all_detectors(setup):
    model, x_train, y_train, x_test, y_test = setup
    detectors = {**cheap_detectors(), "KDBU": KDBU(n_passes=5), "MAHA-pre": Mahalanobis(noise_magnitude=0.0005),
                 "DNN": DNNDetector(n_iter=3, batch_size=16, width=(4, 4, 4))}
    table = evaluate_detectors(model, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                               attack=make_bim(model), detectors=detectors, attack_name="BIM",
                               dataset="synthetic", eps=0.1, n_boot=30, seed=1)
    assert list(table.columns) == result_columns()
    assert list(table.detector) == list(detectors)
    assert (table.attack == "BIM").all() and (table.dataset == "synthetic").all() and (table.eps == 0.1).all()
    for m in ("auroc", "tpr90", "auprc"):
        assert table[m].between(0, 1).all()
        assert (table[f"{m}_lo"] <= table[m] + 1e-12).all() and (table[m] <= table[f"{m}_hi"] + 1e-12).all()
    assert (table.n_adv > 0).all() and (table.n_normal == 2 * table.n_adv).all()
    assert table.attack_success_rate.between(0, 1).all()
    # feature-space detectors find these BIM examples easily
    assert table.set_index("detector").loc["MAHA", "auroc"] > 0.8


def test_precomputed_attack_matches_callable(setup, protocol):
    model, _, _, x_test, _ = setup
    attack = make_bim(model)
    a = protocol.evaluate(attack, attack_name="BIM")
    y_all = setup[4]
    x_adv_full = attack(x_test, y_all)  # aligned with x_test: the protocol keeps the right rows
    b = protocol.evaluate(x_adv_full, attack_name="BIM")
    cols = ["auroc", "tpr90", "auprc", "n_adv"]
    pd.testing.assert_frame_equal(a[cols], b[cols], atol=1e-6)
    c = protocol.evaluate(x_adv_full[torch.as_tensor(protocol.kept_)])
    assert c.attack.iloc[0] == "precomputed"
    with pytest.raises(ValueError, match="rows"):
        protocol.evaluate(x_adv_full[:5])


def test_targeted_attack_success(setup, protocol):
    model, _, _, _, y_test = setup
    targets = 1 - y_test.numpy()
    table = protocol.evaluate(make_bim(model), targets=targets, attack_name="BIM-targeted")
    x_adv = make_bim(model)(protocol.clean_.images, torch.as_tensor(protocol.y_kept_),
                            target=torch.as_tensor(targets[protocol.kept_]))
    with torch.no_grad():
        reached = (model(x_adv).argmax(1).numpy() == targets[protocol.kept_]).mean()
    assert table.attack_success_rate.iloc[0] == pytest.approx(reached)


def test_no_successful_attack_gives_nan_rows(setup, protocol, caplog):
    with caplog.at_level(logging.WARNING):
        table = protocol.evaluate(lambda x, y: x.clone(), attack_name="identity")
    assert table.auroc.isna().all() and (table.n_adv == 0).all() and (table.attack_success_rate == 0).all()
    assert "metrics are NaN" in caplog.text


def test_protocol_errors(setup):
    model = setup[0]
    with pytest.raises(RuntimeError, match="prepare"):
        DetectionProtocol(model, {"KD": KD()}).evaluate(lambda x, y: x)
    with pytest.raises(ValueError, match="split"):
        DetectionProtocol(model, {"KD": KD()}, split=1.0)
    with pytest.raises(KeyError, match="this model has"):
        DetectionProtocol(model, {"KD": KD()}, layers=["nope"])
    with pytest.raises(ValueError, match="empty"):
        DetectionProtocol(model, {})


def test_evaluate_transfer_matches_evaluate_on_the_same_attack(setup, protocol):
    model, _, _, x_test, _ = setup
    x_kept = protocol.clean_.images
    x_adv = make_bim(model)(x_kept, torch.as_tensor(protocol.y_kept_))
    plain = protocol.evaluate(x_adv, attack_name="BIM", eps=0.1)
    moved = protocol.evaluate_transfer(x_adv, {"BIM": x_adv}, fit_name="BIM", eps=0.1)
    assert list(moved.columns) == result_columns() + ["fit_attack"]
    cols = ["auroc", "tpr90", "auprc", "n_adv", "n_fit_adv", "attack_success_rate"]
    pd.testing.assert_frame_equal(plain[cols].reset_index(drop=True), moved[cols].reset_index(drop=True))


def test_evaluate_transfer_fits_on_one_attack_and_scores_another(setup, protocol):
    model = setup[0]
    y = torch.as_tensor(protocol.y_kept_)
    x_kept = protocol.clean_.images
    weak, strong = make_bim(model, eps=0.08)(x_kept, y), make_bim(model, eps=0.2)(x_kept, y)
    table = protocol.evaluate_transfer(weak, {"strong": strong, "weak": weak}, fit_name="weak", dataset="s")
    assert set(table["attack"]) == {"strong", "weak"} and (table["fit_attack"] == "weak").all()
    with torch.no_grad():
        ok_weak = model(weak).argmax(1).numpy() != protocol.y_kept_
        ok_strong = model(strong).argmax(1).numpy() != protocol.y_kept_
    n_fit = int((ok_weak & protocol.fit_side_).sum())
    assert n_fit >= 2 and ok_strong.sum() > ok_weak.sum()  # the test needs a weaker and a stronger attack
    rows = table.set_index(["attack", "detector"])
    assert (table["n_fit_adv"] == n_fit).all()  # the supervised parts saw the fit attack's AEs only
    assert protocol.fitted_["SVM"].svc_.shape_fit_[0] == 3 * n_fit
    assert rows.loc[("strong", "KD"), "n_adv"] == int((ok_strong & ~protocol.fit_side_).sum())
    assert rows.loc[("strong", "KD"), "attack_success_rate"] == pytest.approx(ok_strong.mean())
    s = protocol.scores_
    held = set(protocol.kept_[ok_strong & ~protocol.fit_side_])
    assert set(s[(s.attack == "strong") & (s.detector == "KD")]["index"]) == held
    assert not held & set(protocol.kept_[protocol.fit_side_])  # never an image of the fitting side


def test_evaluate_transfer_errors(setup, protocol):
    x = protocol.clean_.images
    with pytest.raises(ValueError, match="held_out is empty"):
        protocol.evaluate_transfer(x, {})
    with pytest.raises(ValueError, match="held_out_targets"):
        protocol.evaluate_transfer(x, {"a": x}, held_out_targets={"b": np.zeros(len(x), dtype=int)})
    with pytest.raises(TypeError, match="tensor"):
        protocol.evaluate_transfer(x, {"a": "not images"})
    with pytest.raises(RuntimeError, match="prepare"):
        DetectionProtocol(setup[0], cheap_detectors()).evaluate_transfer(x, {"a": x})
