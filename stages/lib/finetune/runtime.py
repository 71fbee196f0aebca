"""Where and how fine-tuning runs: the devices, the distribution strategy, the precision and XLA.

`select_runtime` is a pure decision from the params and the GPUs found (so it is testable on a CPU with
made-up GPU lists); `visible_gpus` asks TensorFlow what is there; `apply_precision` and `distribution_strategy` apply
a decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stages.lib.errors import UserError

# float16 matmuls and convolutions run on tensor cores from Volta (compute capability 7.0) on; older
# GPUs get no speed-up from mixed_float16, only its rounding.
MIXED_PRECISION_MIN_CAPABILITY = (7, 0)


@dataclass(frozen=True)
class Gpu:
    """A GPU as TensorFlow reports it."""

    name: str  # TensorFlow's device name, e.g. /physical_device:GPU:0
    model: str  # e.g. NVIDIA H200 ("" when the driver does not say)
    compute_capability: tuple[int, int] | None  # None when the driver does not say

    def supports_mixed_precision(self) -> bool:
        return self.compute_capability is not None and self.compute_capability >= MIXED_PRECISION_MIN_CAPABILITY

    def describe(self) -> str:
        capability = ".".join(map(str, self.compute_capability)) if self.compute_capability else "unknown"
        return f"{self.name.removeprefix('/physical_device:')} ({self.model or 'unknown model'}, compute {capability})"


@dataclass(frozen=True)
class Runtime:
    """How the train stage fine-tunes: what it runs on and with which settings."""

    gpus: tuple[Gpu, ...]
    strategy: str  # "mirrored" (every visible GPU, one replica each) or "default" (one device)
    policy: str  # Keras dtype policy: "float32" or "mixed_float16"
    xla: bool

    @property
    def replicas(self) -> int:
        return max(1, len(self.gpus)) if self.strategy == "mirrored" else 1

    def describe(self) -> str:
        devices = ", ".join(gpu.describe() for gpu in self.gpus) if self.gpus else "CPU (no GPU visible)"
        strategy = f"MirroredStrategy over {self.replicas} GPUs" if self.strategy == "mirrored" else "one device"
        return f"devices: {devices}; {strategy}; precision {self.policy}; XLA {'on' if self.xla else 'off'}"


def select_runtime(mixed_precision: str, xla: bool, batch_size: int, gpus: Sequence[Gpu]) -> Runtime:
    """Decide strategy and precision from train.mixed_precision (auto | on | off), train.xla and the GPUs.

    Every GPU is used (MirroredStrategy) when there are several; `train.batch_size` is then the global
    batch, split between them. mixed_float16 is used under `auto` only when every GPU supports it, so
    a CPU run, or one on an old GPU, computes in float32 with the same code.
    """
    gpus = tuple(gpus)
    capable = bool(gpus) and all(gpu.supports_mixed_precision() for gpu in gpus)
    if mixed_precision == "on" and not capable:
        found = ", ".join(gpu.describe() for gpu in gpus) or "no GPU"
        raise UserError(
            f"train.mixed_precision = true: needs GPUs of compute capability >= 7.0, found {found}; "
            "use auto (float32 where mixed precision does not help) or false"
        )
    policy = "mixed_float16" if capable and mixed_precision != "off" else "float32"
    runtime = Runtime(gpus=gpus, strategy="mirrored" if len(gpus) > 1 else "default", policy=policy, xla=xla)
    if batch_size < runtime.replicas:
        raise UserError(
            f"train.batch_size = {batch_size}: it is the global batch, split over {runtime.replicas} GPUs; "
            f"use at least {runtime.replicas}"
        )
    return runtime


def visible_gpus() -> list[Gpu]:
    """The GPUs TensorFlow can use in this process (respects CUDA_VISIBLE_DEVICES)."""
    import tensorflow as tf

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capability = details.get("compute_capability")
        gpus.append(
            Gpu(
                name=device.name,
                model=str(details.get("device_name", "")),
                compute_capability=tuple(capability) if capability else None,
            )
        )
    return gpus


def devices_seen() -> str:
    """What a stage that runs on TensorFlow's default device uses, for its log."""
    gpus = visible_gpus()
    return f"device: {gpus[0].describe()}" if gpus else "device: CPU (no GPU visible)"


def apply_precision(runtime: Runtime) -> None:
    """Set Keras' global dtype policy; models built afterwards compute in it.

    `keras.backend.clear_session()` resets the policy: apply it again after clearing.
    """
    import keras

    keras.mixed_precision.set_global_policy(runtime.policy)


def distribution_strategy(runtime: Runtime):
    """The tf.distribute strategy to build and compile the model under."""
    import tensorflow as tf

    if runtime.strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
