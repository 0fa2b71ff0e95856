"""The pipeline tests' default toy model (see _toy_model.py)."""
import pytest
from _toy_model import toy_trained_model


@pytest.fixture(scope="module")
def toy_tm():
    return toy_trained_model()
