import dataclasses

import pytest

from gan_backends.backends import REGISTRY, BackendUnavailable, available_backends, get_backend


def test_unknown_backend_lists_the_known():
    with pytest.raises(ValueError, match="unknown backend 'mxnet'; known: numpy, torch, tensorflow, jax"):
        get_backend("mxnet")


def test_aliases():
    assert get_backend("reference").name == "numpy"


def test_missing_framework_names_the_extra(monkeypatch):
    entry = REGISTRY["jax"]
    monkeypatch.setitem(REGISTRY, "jax", dataclasses.replace(entry, requires=("jax_not_installed_here",)))
    with pytest.raises(BackendUnavailable) as err:
        get_backend("jax")
    assert isinstance(err.value, ImportError)
    assert "pip install 'gan-backends[jax]'" in str(err.value)
    assert "jax_not_installed_here" in str(err.value)
    assert "jax" not in available_backends()


def test_numpy_reference_always_available():
    assert "numpy" in available_backends()
