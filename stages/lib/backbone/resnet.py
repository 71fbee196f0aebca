"""The ResNet50 backbone, its weights and its input preprocessing; plus seeding the Keras backend for
reproducible runs (the seeds themselves: stages.lib.core.seeds)."""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from stages.lib.backbone.backend import backend_name, import_keras
from stages.lib.core.errors import UserError, one_line
from stages.lib.core.io import file_digest
from stages.lib.core.network import NetworkUnreachable, require_keras_weights_reachable

NOTOP_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
FEATURE_DIM = 2048
# keras.applications.imagenet_utils (caffe mode): the ImageNet means of the blue, green and red channels.
IMAGENET_BGR_MEANS = np.array([103.939, 116.779, 123.68], dtype=np.float32)
# Keras downloads this file for `model.weights: imagenet` and checks its hash.
IMAGENET_WEIGHTS = "keras.applications.ResNet50 imagenet, include_top=False"


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and the Keras backend, and make its ops deterministic (same numbers run after run).

    Per backend: TensorFlow's op determinism; on torch, deterministic algorithms; on JAX, XLA's
    deterministic GPU ops (set before JAX starts, by stages.lib.backbone.backend; XLA on a CPU is deterministic).
    `deterministic=False` only seeds: for XLA-compiled training on TensorFlow, which Keras itself will not
    combine with op determinism (not every op has a deterministic XLA kernel).
    """
    name = backend_name()
    if deterministic and name == "tensorflow":
        os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    if not deterministic:
        return
    if name == "tensorflow":
        import tensorflow as tf

        # Raises once TF has initialised in this process; determinism is then already set (or cannot be).
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.enable_op_determinism()
    elif name == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)  # warn, not fail, on an op without one
        torch.backends.cudnn.benchmark = False


def resolve_weights(weights: str) -> str | None:
    """Keras' `weights` argument for a `model.weights` param value, checked before building."""
    if weights == "imagenet":
        return "imagenet"
    if weights.lower() == "none":
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(
            f"model.weights = {weights!r}: no such file; use `imagenet`, `none`, or a path to a "
            f"ResNet50 no-top weights file such as {NOTOP_WEIGHTS_FILE}"
        )
    if not path.name.endswith((".h5", ".hdf5", ".keras")):
        raise UserError(f"model.weights = {weights!r}: expected a Keras weights file (.h5, .weights.h5 or .keras)")
    return str(path)


def weights_fingerprint(weights: str) -> dict[str, Any]:
    """What `model.weights` holds: ImageNet's published file, a random init, or the hash of a local file."""
    resolved = resolve_weights(weights)  # a missing file fails here, naming model.weights
    if resolved is None:
        return {"kind": "random_init"}
    if resolved == "imagenet":
        return {"kind": "imagenet", "weights": IMAGENET_WEIGHTS}
    path = Path(resolved)
    return {"kind": "file", "bytes": path.stat().st_size, "sha256": file_digest(path)}


def build_backbone(weights: str, image_size: int):
    """ResNet50 without its classifier, global-average pooled: images (S, S, 3) in 0–255 → 2048 features.

    `weights` is the `model.weights` param. Raises UserError, naming that param, when the ImageNet
    download fails (offline) or a weights file does not fit the architecture, wholly or in part.
    """
    resolved = resolve_weights(weights)
    require_weights_reachable(weights)
    keras = import_keras()

    # Keras warns once per layer when a file does not match (a screenful), and for some mismatches
    # only warns, leaving those layers randomly initialised: either way the file does not fit.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = keras.applications.ResNet50(
                include_top=False, weights=resolved, input_shape=(image_size, image_size, 3), pooling="avg"
            )
        except Exception as error:
            if resolved is None:
                raise  # random init failing is a bug, not a user error: keep the traceback
            raise _weights_error(weights, error) from None
    loading_warnings = [w for w in caught if issubclass(w.category, UserWarning) and "keras" in w.filename]
    if resolved is not None and loading_warnings:
        raise _weights_error(weights, loading_warnings[0].message)
    for other in caught:
        if other not in loading_warnings:
            warnings.showwarning(other.message, other.category, other.filename, other.lineno)
    return model


def require_weights_reachable(weights: str) -> None:
    """`model.weights: imagenet` with the file not in Keras' cache and no network: the one-line error in
    seconds, checked before TensorFlow loads (itself seconds), not after Keras' download fails."""
    if weights != "imagenet":
        return
    try:
        require_keras_weights_reachable(NOTOP_WEIGHTS_FILE)
    except NetworkUnreachable as error:
        raise _weights_error(weights, error) from None


def _weights_error(weights: str, cause: BaseException | Warning) -> UserError:
    """The one-line error for a `model.weights` value (imagenet or a file) that could not be loaded."""
    detail = f"{type(cause).__name__}: {one_line(cause, 200)}"
    if weights == "imagenet":
        return UserError(
            f"model.weights = imagenet: could not get the ImageNet weights ({detail}). Offline, place "
            f"{NOTOP_WEIGHTS_FILE} in ~/.keras/models/, or set model.weights to a local weights file or "
            "`none` (random init)"
        )
    return UserError(
        f"model.weights = {weights!r}: the file does not fit ResNet50 without its top ({detail}); use a "
        f"ResNet50 no-top weights file such as {NOTOP_WEIGHTS_FILE}, `imagenet` or `none`"
    )


def preprocess(images: np.ndarray) -> np.ndarray:
    """ResNet50's preprocessing, as Keras' caffe-mode preprocess_input (RGB→BGR, ImageNet means subtracted),
    in NumPy on a copy: the same numbers on every backend (Keras' own returns a backend tensor on JAX/torch)."""
    return np.array(images, dtype=np.float32, copy=True)[..., ::-1] - IMAGENET_BGR_MEANS
