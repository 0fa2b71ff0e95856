"""Provenance records and tables."""
from __future__ import annotations

import pytest

from medadv_lib import provenance
from medadv_lib.config import get_profile


def test_provenance_record_and_tables():
    profile = get_profile("smoke")
    record = provenance.collect(profile, device="cpu", cache_keys=["k1", "k2", "k1"], extra={"seed": 0})
    for key in ("medadv", "git commit", "python", "torch", "profile", "device", "cache keys", "run at (UTC)"):
        assert key in record
    assert record["cache keys"] == "k1, k2" and record["seed"] == "0"
    assert record["profile"].startswith("smoke (settings digest ")
    assert provenance.profile_digest(profile) == provenance.profile_digest(get_profile("smoke"))
    assert provenance.profile_digest(profile) != provenance.profile_digest(get_profile("smoke", {"train.epochs": 2}))
    frame = provenance.table(record)
    assert list(frame.columns) == ["item", "value"] and len(frame) == len(record)
    settings = provenance.settings_table(profile, dataset="all")
    assert settings.iloc[0].tolist() == ["parameter", "dataset", "all"]
    assert "train.arch" in set(settings["setting"]) and "profile smoke" in set(settings["source"])


@pytest.mark.mirror
def test_data_provenance_on_the_mirror(mirror):
    frame = provenance.data_provenance(["retinamnist", "pneumoniamnist", "chestxray"])
    rows = frame.set_index("dataset")
    assert rows.loc["retinamnist", "official MD5"] == "matches"
    assert rows.loc["pneumoniamnist", "official MD5"] == "differs"
    assert rows.loc["chestxray", "official MD5"] == "none known"
    assert set(rows["verified by"]) <= {"SHA256SUMS", "official MD5"}
