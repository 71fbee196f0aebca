"""Where and how fine-tuning runs on each Keras backend: the devices, multi-GPU, the precision and XLA.

`select_runtime` is a pure decision from the backend, the params and the GPUs found (so it is testable
on a CPU with made-up GPU lists); `visible_gpus` asks the backend what is there; `apply_precision`,
`distribution_scope` and `jit_compile` apply a decision.

Per backend:
- tensorflow: several GPUs through `tf.distribute.MirroredStrategy`; `train.xla` picks jit_compile.
- jax: several GPUs through `keras.distribution.DataParallel` (the batch split over them); every step is
  XLA-compiled whatever `train.xla` says: on JAX, jit_compile=False runs eagerly, ~15× slower
  (keras-team/keras#18648), so it is never chosen.
- torch: one GPU (the first): Keras 3 has no multi-GPU `fit` on torch. `train.xla: true` is refused: torch
  has no XLA here (Keras' jit_compile would mean torch.compile, another thing).
Precision, on every backend: mixed_bfloat16 where every GPU computes bfloat16 on tensor cores (Ampere,
compute capability 8.0, and later: no loss scaling needed, bfloat16 has float32's range); else
mixed_float16 (Volta and Turing, 7.x: Keras wraps the optimizer in a LossScaleOptimizer); else float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from stages.lib.core.errors import UserError

# float16 matmuls and convolutions run on tensor cores from Volta (compute capability 7.0) on, bfloat16 ones
# from Ampere (8.0) on; older GPUs get no speed-up from mixed precision, only its rounding.
MIXED_PRECISION_MIN_CAPABILITY = (7, 0)
BFLOAT16_MIN_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class Gpu:
    """A GPU as the backend reports it."""

    name: str  # the backend's device name, e.g. GPU:0
    model: str  # e.g. NVIDIA H200 ("" when the driver does not say)
    compute_capability: tuple[int, int] | None  # None when the driver does not say

    def supports_mixed_precision(self) -> bool:
        return self.compute_capability is not None and self.compute_capability >= MIXED_PRECISION_MIN_CAPABILITY

    def supports_bfloat16(self) -> bool:
        return self.compute_capability is not None and self.compute_capability >= BFLOAT16_MIN_CAPABILITY

    def describe(self) -> str:
        capability = ".".join(map(str, self.compute_capability)) if self.compute_capability else "unknown"
        return f"{self.name.removeprefix('/physical_device:')} ({self.model or 'unknown model'}, compute {capability})"


@dataclass(frozen=True)
class Runtime:
    """How the train stage fine-tunes: the backend, what it runs on and with which settings."""

    backend: str  # tensorflow | jax | torch
    gpus: tuple[Gpu, ...]  # the GPUs used
    strategy: str  # "mirrored" (tf), "data_parallel" (jax): every GPU, one replica each; "default": one device
    policy: str  # Keras dtype policy: "float32", "mixed_bfloat16" or "mixed_float16"
    xla: bool  # whether the training step is XLA-compiled

    @property
    def replicas(self) -> int:
        return len(self.gpus) if self.strategy != "default" else 1

    def describe(self) -> str:
        devices = ", ".join(gpu.describe() for gpu in self.gpus) if self.gpus else "CPU (no GPU visible)"
        strategy = {
            "mirrored": f"MirroredStrategy over {self.replicas} GPUs",
            "data_parallel": f"keras.distribution.DataParallel over {self.replicas} GPUs",
        }.get(self.strategy, "one device")
        xla = "on" if self.xla else "off"
        return f"backend {self.backend}; devices: {devices}; {strategy}; precision {self.policy}; XLA {xla}"


def select_runtime(
    mixed_precision: str, xla: bool, batch_size: int, gpus: Sequence[Gpu], backend: str = "tensorflow"
) -> Runtime:
    """Decide devices, strategy, precision and XLA from the backend, train.mixed_precision (auto | on | off),
    train.xla and the GPUs found.

    Every GPU is used when there are several (torch: the first only); `train.batch_size` is then the
    global batch, split between them. Mixed precision under `auto` only when every GPU used supports it,
    so a CPU run, or one on an old GPU, computes in float32 with the same code.
    """
    gpus = tuple(gpus)
    if backend == "torch":
        if xla:
            raise UserError("train.xla = true: the torch backend has no XLA; set it to false, or use KERAS_BACKEND=jax")
        gpus = gpus[:1]
    capable = bool(gpus) and all(gpu.supports_mixed_precision() for gpu in gpus)
    if mixed_precision == "on" and not capable:
        found = ", ".join(gpu.describe() for gpu in gpus) or "no GPU"
        raise UserError(
            f"train.mixed_precision = true: needs GPUs of compute capability >= 7.0, found {found}; "
            "use auto (float32 where mixed precision does not help) or false"
        )
    policy = "float32"
    if capable and mixed_precision != "off":
        policy = "mixed_bfloat16" if all(gpu.supports_bfloat16() for gpu in gpus) else "mixed_float16"
    several = {"tensorflow": "mirrored", "jax": "data_parallel"}.get(backend, "default")
    runtime = Runtime(
        backend=backend,
        gpus=gpus,
        strategy=several if len(gpus) > 1 else "default",
        policy=policy,
        xla=xla or backend == "jax",
    )
    if batch_size < runtime.replicas:
        raise UserError(
            f"train.batch_size = {batch_size}: it is the global batch, split over {runtime.replicas} GPUs; "
            f"use at least {runtime.replicas}"
        )
    return runtime


def _capability(text: str | None) -> tuple[int, int] | None:
    """'9.0' → (9, 0); None or unparseable → None."""
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except (TypeError, ValueError):
        return None


def visible_gpus(backend: str | None = None) -> list[Gpu]:
    """The GPUs the backend (default: the one in use) can see in this process (respects CUDA_VISIBLE_DEVICES)."""
    from stages.lib.backbone.backend import backend_name, import_keras

    backend = backend or backend_name()
    import_keras()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = []
        for device in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(device)
            capability = details.get("compute_capability")
            name = device.name.removeprefix("/physical_device:")
            gpus.append(Gpu(name, str(details.get("device_name", "")), tuple(capability) if capability else None))
        return gpus
    if backend == "jax":
        import jax

        try:
            devices = jax.devices("gpu")
        except RuntimeError:  # no GPU backend in this jaxlib, or no GPU
            return []
        return [
            Gpu(f"GPU:{d.id}", str(d.device_kind), _capability(getattr(d, "compute_capability", None))) for d in devices
        ]
    import torch

    return [
        Gpu(f"GPU:{i}", torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)))
        for i in range(torch.cuda.device_count())
    ]


def devices_seen() -> str:
    """What a stage that runs on the backend's default device uses, for its log."""
    from stages.lib.backbone.backend import backend_name

    gpus = visible_gpus()
    device = gpus[0].describe() if gpus else "CPU (no GPU visible)"
    return f"backend {backend_name()}; device: {device}"


def apply_precision(runtime: Runtime) -> None:
    """Set Keras' global dtype policy; models built afterwards compute in it.

    `keras.backend.clear_session()` resets the policy: apply it again after clearing.
    """
    import keras

    keras.mixed_precision.set_global_policy(runtime.policy)


def distribution_scope(runtime: Runtime):
    """A context to build and compile the model in, spreading it over the runtime's GPUs.

    TensorFlow: a MirroredStrategy scope (the default strategy on one device). JAX: on several GPUs, a
    DataParallel distribution is set for the process (Keras splits each batch over the devices); on one
    device nothing changes. torch: one device, nothing to set.
    """
    if runtime.backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy() if runtime.strategy == "mirrored" else tf.distribute.get_strategy()
        return strategy.scope()
    if runtime.strategy == "data_parallel":
        import keras

        keras.distribution.set_distribution(keras.distribution.DataParallel())
    return contextlib.nullcontext()
