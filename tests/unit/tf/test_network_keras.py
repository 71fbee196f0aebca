"""stages.lib.core.network's copy of what Keras decides for the ImageNet weights: the URL it downloads them from
and the folder it caches them in (network.py does not import Keras, which loads TensorFlow)."""

from __future__ import annotations

from pathlib import Path

from keras.src.applications.resnet import BASE_WEIGHTS_PATH
from keras.src.backend.config import keras_home

from stages.lib.core.network import KERAS_RESNET_WEIGHTS_URL, keras_cache_dir


def test_the_weights_url_is_keras_own() -> None:
    assert KERAS_RESNET_WEIGHTS_URL == BASE_WEIGHTS_PATH


def test_the_cache_folder_is_keras_own() -> None:
    assert keras_cache_dir() == Path(keras_home()).expanduser()
