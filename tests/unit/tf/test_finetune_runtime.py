"""Choosing devices, strategy, precision and XLA for fine-tuning, with made-up GPU lists, on a CPU."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.backbone.runtime import Gpu, apply_precision, distribution_scope, select_runtime, visible_gpus
from stages.lib.core.errors import UserError

H200 = Gpu("/physical_device:GPU:0", "NVIDIA H200", (9, 0))
T4 = Gpu("/physical_device:GPU:1", "Tesla T4", (7, 5))
P100 = Gpu("/physical_device:GPU:1", "Tesla P100-PCIE-16GB", (6, 0))
UNKNOWN = Gpu("/physical_device:GPU:0", "", None)


def test_a_cpu_runs_float32_on_one_device() -> None:
    runtime = select_runtime("auto", xla=False, batch_size=32, gpus=[])
    assert (runtime.policy, runtime.strategy, runtime.replicas, runtime.xla) == ("float32", "default", 1, False)
    assert runtime.describe() == (
        "backend tensorflow; devices: CPU (no GPU visible); one device; precision float32; XLA off"
    )


def test_one_modern_gpu_gets_bfloat16_without_mirroring() -> None:
    runtime = select_runtime("auto", xla=True, batch_size=32, gpus=[H200])
    assert (runtime.policy, runtime.strategy, runtime.replicas, runtime.xla) == ("mixed_bfloat16", "default", 1, True)
    assert "GPU:0 (NVIDIA H200, compute 9.0)" in runtime.describe()
    assert "precision mixed_bfloat16; XLA on" in runtime.describe()


def test_volta_and_turing_get_float16_with_loss_scaling_and_a_mix_takes_the_weaker() -> None:
    assert select_runtime("auto", xla=False, batch_size=32, gpus=[T4]).policy == "mixed_float16"
    assert select_runtime("auto", xla=False, batch_size=32, gpus=[H200, T4]).policy == "mixed_float16"


def test_each_backend_spreads_over_its_gpus_its_own_way() -> None:
    jax = select_runtime("auto", xla=False, batch_size=32, gpus=[H200, H200], backend="jax")
    assert (jax.strategy, jax.replicas, jax.xla) == ("data_parallel", 2, True)  # JAX always compiles with XLA
    assert "keras.distribution.DataParallel over 2 GPUs" in jax.describe()
    torch = select_runtime("auto", xla=False, batch_size=32, gpus=[H200, H200], backend="torch")
    assert (torch.strategy, torch.replicas, len(torch.gpus), torch.xla) == ("default", 1, 1, False)
    with pytest.raises(UserError, match=r"^train.xla = true: the torch backend has no XLA"):
        select_runtime("auto", xla=True, batch_size=32, gpus=[], backend="torch")


def test_every_gpu_is_used_and_the_batch_is_global() -> None:
    runtime = select_runtime("auto", xla=False, batch_size=32, gpus=[H200, T4])
    assert (runtime.strategy, runtime.replicas, runtime.policy) == ("mirrored", 2, "mixed_float16")  # T4: no bf16
    assert "MirroredStrategy over 2 GPUs" in runtime.describe()
    with pytest.raises(UserError, match=r"^train.batch_size = 1: .*global batch.* 2 GPUs"):
        select_runtime("auto", xla=False, batch_size=1, gpus=[H200, T4])


@pytest.mark.parametrize("gpus", [[P100], [H200, P100], [UNKNOWN]])
def test_auto_keeps_float32_unless_every_gpu_has_tensor_cores(gpus: list[Gpu]) -> None:
    assert select_runtime("auto", xla=False, batch_size=32, gpus=gpus).policy == "float32"


def test_mixed_precision_on_demands_capable_gpus_and_off_refuses_it() -> None:
    assert select_runtime("on", xla=False, batch_size=32, gpus=[T4]).policy == "mixed_float16"
    assert select_runtime("off", xla=False, batch_size=32, gpus=[H200]).policy == "float32"
    for gpus in ([], [P100]):
        with pytest.raises(UserError, match=r"^train.mixed_precision = true: needs GPUs of compute capability"):
            select_runtime("on", xla=False, batch_size=32, gpus=gpus)


def test_on_this_machine_the_same_code_selects_and_builds_a_working_runtime() -> None:
    """No GPU here: the default strategy with one replica, in float32."""
    gpus = visible_gpus()
    runtime = select_runtime("auto", xla=False, batch_size=8, gpus=gpus)
    import tensorflow as tf

    with distribution_scope(runtime):
        assert tf.distribute.get_strategy().num_replicas_in_sync == runtime.replicas
    if not gpus:
        assert runtime.policy == "float32" and runtime.replicas == 1


@pytest.fixture(params=[T4, H200], ids=["float16", "bfloat16"])
def mixed_policy(request):
    import keras

    runtime = select_runtime("on", xla=False, batch_size=8, gpus=[request.param])
    apply_precision(runtime)
    yield runtime.policy
    keras.mixed_precision.set_global_policy("float32")


def test_under_mixed_precision_the_model_computes_in_16_bits_but_outputs_float32(mixed_policy: str) -> None:
    """The logits stay float32 (float16 overflows beyond 65504); float16's loss is scaled, bfloat16's not."""
    import keras

    from stages.lib.backbone.resnet import build_backbone
    from stages.lib.losses import make_loss
    from stages.lib.train.finetune.model import build_fine_tune_model, build_head, set_trainable_blocks

    backbone = build_backbone("none", image_size=32)
    set_trainable_blocks(backbone, 1)
    head = build_head(np.random.default_rng(0).normal(size=(8, 2048)).astype(np.float32), "binary", 2)
    model = build_fine_tune_model(backbone, head)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=make_loss("bce", "binary", {}))
    assert backbone.get_layer("conv5_block3_3_conv").compute_dtype == mixed_policy.removeprefix("mixed_")
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (mixed_policy == "mixed_float16")
    images = np.random.default_rng(1).uniform(-100, 100, size=(4, 32, 32, 3)).astype(np.float32)
    output = model(images, training=False)
    assert keras.backend.standardize_dtype(output.dtype) == "float32"
    loss = model.train_on_batch(images, np.array([[0.0], [1.0], [0.0], [1.0]], np.float32))
    assert np.isfinite(loss)
