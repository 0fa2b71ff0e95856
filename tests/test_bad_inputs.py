"""Property tests: random overrides and random command lines are either accepted (and the result
is valid) or refused with a clear error naming the key; never any other exception.

Examples are cheap: no training, no data loading (the train command's model stage is replaced).
"""
import contextlib
import dataclasses
import io
import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medadv_lib import cli
from medadv_lib.attacks import ATTACKS
from medadv_lib.config import PROFILES, ConfigError, _annotations, get_profile
from medadv_lib.validation import check_labels

KEYS = list(_annotations(PROFILES["smoke"]))
BAD_KEYS = ["train", "name", "train.", ".epochs", "train.epoch", "detect.attack", "", "Device", "data.image_size.x"]

TEXT_VALUES = st.sampled_from(["none", "null", "None", "", " ", "0", "1", "-1", "2", "10", "2.5", "1e3", "inf", "-inf",
                               "nan", "true", "false", "maybe", "yes", "off", "1,2", "(1, 4)", "[8]", "1,,2", "1,a",
                               "0,256", "300", "cpu", "cuda", "cuda:0", "cuda:x", "gpu", "auto", "bim", "pgd,bim",
                               "pgd,nope", "resnet18", "smallcnn", "alexnet", "0.5", "1.0", "\x00", "é"])
EDGES = st.sampled_from([float("inf"), float("-inf"), float("nan"), 2.5, 1e308, -0.0, True, False, None, (), [],
                         (1, 2.0), ("1",), 0, -1, 257])
VALUES = st.one_of(
    TEXT_VALUES, EDGES, st.text(max_size=8), st.none(), st.booleans(), st.integers(-10, 2000),
    st.floats(allow_nan=True, allow_infinity=True), st.lists(st.integers(-5, 300), max_size=4),
    st.tuples(st.integers(0, 256)), st.lists(st.one_of(st.floats(0, 10), st.booleans(), st.text(max_size=2)), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


def _has_type(annotation, value):
    """The test's own reading of an annotation, independent of config._normalise."""
    base, _, rest = annotation.partition(" | ")
    if value is None:
        return rest == "None"
    if base == "float":
        return type(value) is float and math.isfinite(value)
    if base.startswith("tuple"):
        return type(value) is tuple and len(value) > 0 and all(type(k) is int for k in value)
    return type(value) is {"int": int, "bool": bool, "str": str}[base]


def _assert_valid(profile):
    """Every field has its declared type, budgets are in range, attacks are known, and the profile
    survives re-validation."""
    for key, annotation in _annotations(profile).items():
        section, _, attr = key.rpartition(".")
        value = getattr(getattr(profile, section) if section else profile, attr)
        assert _has_type(annotation, value), (key, value)
    assert re.fullmatch(r"auto|cpu|cuda|cuda:[0-9]+", profile.device)
    assert all(0 <= k <= 256 for k in profile.attack.eps_k + profile.attack.stress_eps_k + profile.detect.eps_k)
    assert set(profile.detect.sweep_attack_list) <= set(profile.detect.attack_list) <= set(ATTACKS)
    for section in ("data", "train", "attack", "detect"):
        dataclasses.replace(getattr(profile, section))  # re-runs every check
    dataclasses.replace(profile)


@pytest.mark.parametrize("key", KEYS + BAD_KEYS)
@settings(max_examples=60, deadline=None)
@given(profile=st.sampled_from(sorted(PROFILES)), value=VALUES)
def test_one_override_is_accepted_and_valid_or_refused_naming_the_key(key, profile, value):
    try:
        result = get_profile(profile, {key: value})
    except ConfigError as err:
        assert repr(key) in str(err) or key in str(err), (key, value, str(err))
        return
    assert key in KEYS
    _assert_valid(result)


@settings(max_examples=300, deadline=None)
@given(pairs=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=5))
def test_many_overrides_are_order_independent(pairs):
    def outcome(items):
        try:
            return get_profile("smoke", items)
        except ConfigError as err:
            assert any(k in str(err) for k, _ in items), (items, str(err))
            return ConfigError

    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):  # with a repeated key the last one wins, so order matters by design
        pairs = list(dict(pairs).items())
    forward, backward = outcome(pairs), outcome(list(reversed(pairs)))
    if forward is not ConfigError:
        _assert_valid(forward)
    # refusal may name another key first, but acceptance and the accepted profile are order-free
    assert (forward is ConfigError) == (backward is ConfigError) and (forward is ConfigError or forward == backward)


TOKENS = st.sampled_from(["train", "data", "list", "verify", "download", "cache", "clean", "--set", "--device",
                          "--profile", "--seed", "--dataset", "--data-dir", "--cache-dir", "--size", "-v", "-h",
                          "smoke", "cpu", "paper", "fast", "gpu", "cuda", "cuda:0", "cuda:x", "none", "2", "2.5", "x",
                          "inf", "maybe", "train.epochs", "train.lr", "train.augment", "attack.eps_k", "device",
                          "detect.attacks", "detect.sweep_attacks", "pgd", "nope", "breastmnist", "imagenet", "28",
                          "32", "--older-than", "-1"])
ARGV = st.lists(st.one_of(TOKENS, st.text(max_size=6)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(argv=st.lists(st.one_of(TOKENS, st.sampled_from(["run", "book", "bench", "attacks", "--param", "--output",
                                                        "--timeout", "--chapters", "--no-execute"]),
                               st.text(max_size=6)), max_size=8))
def test_parser_accepts_or_exits_with_usage(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            cli.build_parser().parse_args(argv)
        except SystemExit as stop:
            assert stop.code == 0 or (stop.code == 2 and "usage: medadv" in err.getvalue()), err.getvalue()


class _FakeModel:
    metrics = {"accuracy": 1.0, "balanced_accuracy": 1.0, "auroc": 1.0, "n": 1}
    cache = type("C", (), {"hit": True, "key": "k"})()


@pytest.fixture
def no_training(monkeypatch, tmp_path):
    import medadv_lib.pipeline as pipeline

    seen = []

    def fake(name, profile, *, seed, device):
        seen.append(profile)
        if name not in ("breastmnist",):
            raise KeyError(f"unknown dataset {name!r}; known datasets: breastmnist")
        return _FakeModel()

    monkeypatch.setattr(pipeline, "trained_model", fake)
    monkeypatch.setattr(pipeline, "default_datasets", lambda: ["breastmnist"])
    monkeypatch.setenv("MEDADV_DATA_DIR", str(tmp_path))  # empty: data commands find nothing, load nothing
    monkeypatch.setenv("MEDADV_CACHE_DIR", str(tmp_path / "cache"))
    return seen


def _fail_download(url, timeout):
    raise OSError("network disabled in tests")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=ARGV)
def test_main_never_shows_a_traceback(no_training, monkeypatch, argv):
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", _fail_download)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(argv)
        except SystemExit as stop:
            rc = stop.code
            assert rc == 0 or (rc == 2 and "usage: medadv" in err.getvalue()), err.getvalue()
            return
    message = err.getvalue()
    assert "Traceback" not in message
    if rc != 0 and "no dataset found" not in message:
        assert rc == 2 and message.startswith("medadv: error:"), (argv, rc, message)
    for profile in no_training:  # whatever the train command accepted is a valid profile
        _assert_valid(profile)
    no_training.clear()


# ----------------------------------------------------------------------- labels made under inference_mode

def test_inference_labels_become_usable_outside_inference_mode():
    with torch.inference_mode():
        y = torch.tensor([0, 1, 1])
    out = check_labels(y, 3, 2)
    assert y.is_inference() and not out.is_inference() and torch.equal(out, y)
    logits = torch.zeros(3, 2, requires_grad=True)
    torch.nn.functional.cross_entropy(logits, out).backward()  # the inference tensor itself would raise here
    normal = torch.tensor([0, 1])
    assert check_labels(normal, 2) is normal  # no copy when none is needed


def test_attack_accepts_labels_made_under_inference_mode():
    from medadv_lib.attacks import get_attack
    from medadv_lib.models import build_model

    torch.manual_seed(0)
    model = build_model("smallcnn", num_classes=2, in_channels=1).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.inference_mode():
        y = torch.tensor([0, 1])
    result = get_attack("pgd", model, eps=4 / 256, steps=2, seed=0)(x, y)
    x_adv = getattr(result, "x_adv", result)
    assert (x_adv - x).abs().max() <= 4 / 256 + 1e-6
