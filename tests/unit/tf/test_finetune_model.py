"""Fine-tuning: which of ResNet50's blocks train, and the model's agreement with the head-on-features path."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.backbone.resnet import build_backbone, seed_everything
from stages.lib.train.finetune.model import (
    TrainingClock,
    backbone_features,
    block_of,
    build_fine_tune_model,
    build_head,
    predict_scores,
    residual_blocks,
    set_trainable_blocks,
    throughput,
)

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def backbone():
    seed_everything(0)
    return build_backbone("none", image_size=32)


def trained_layers(model) -> set[str]:
    return {layer.name for layer in model.layers if layer.trainable_weights}


def test_the_blocks_are_resnet50s_sixteen_bottom_to_top(backbone) -> None:
    blocks = residual_blocks(backbone)
    assert len(blocks) == 16
    assert blocks[0] == "conv2_block1" and blocks[-1] == "conv5_block3"
    assert [b.split("_")[0] for b in blocks] == ["conv2"] * 3 + ["conv3"] * 4 + ["conv4"] * 6 + ["conv5"] * 3
    assert block_of("conv4_block6_2_relu") == "conv4_block6"
    assert block_of("conv1_conv") is None and block_of("avg_pool") is None


def test_zero_blocks_freezes_the_whole_backbone(backbone) -> None:
    set_trainable_blocks(backbone, 0)
    assert backbone.trainable_weights == []


def test_the_top_block_trains_alone_and_batch_norm_stays_frozen(backbone) -> None:
    set_trainable_blocks(backbone, 1)
    assert trained_layers(backbone) == {f"conv5_block3_{i}_conv" for i in (1, 2, 3)}
    set_trainable_blocks(backbone, 3)
    assert {block_of(name) for name in trained_layers(backbone)} == {"conv5_block1", "conv5_block2", "conv5_block3"}
    assert "conv5_block1_0_conv" in trained_layers(backbone)  # the projection shortcut belongs to its block


def test_all_trains_the_stem_too_and_sixteen_does_not(backbone) -> None:
    set_trainable_blocks(backbone, None)
    everything = trained_layers(backbone)
    assert "conv1_conv" in everything and "conv2_block1_1_conv" in everything
    assert not any(isinstance(backbone.get_layer(name), keras.layers.BatchNormalization) for name in everything)
    assert everything == {layer.name for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)}
    set_trainable_blocks(backbone, 16)
    assert trained_layers(backbone) == everything - {"conv1_conv"}


def test_a_frozen_fine_tune_model_predicts_what_a_head_on_embedded_features_does(backbone) -> None:
    """The image pipeline and the embed stage feed ResNet50 the same numbers; the head is the same head."""
    from stages.lib.backbone.embedding import embed_images

    images = np.random.default_rng(0).integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
    features = embed_images(backbone, images, batch_size=5)
    np.testing.assert_allclose(backbone_features(backbone, images, batch_size=5), features, rtol=1e-4, atol=1e-4)
    seed_everything(1)
    head = build_head(features, "binary", 2)
    set_trainable_blocks(backbone, 0)
    model = build_fine_tune_model(backbone, head)
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"head"}
    head_alone = np.asarray(keras.ops.sigmoid(head(features, training=False)))[:, 0]  # the head gives logits
    np.testing.assert_allclose(predict_scores(model, images, "binary", batch_size=5), head_alone, atol=1e-5)


class FakeClock:
    """Time that moves only when a test callback moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Advance(keras.callbacks.Callback):
    """Moves the fake clock: `train` seconds per training batch, `validation` per validation pass."""

    def __init__(self, clock: FakeClock, train: float, validation: float) -> None:
        super().__init__()
        self.clock, self.train, self.validation = clock, train, validation

    def on_train_batch_end(self, batch, logs=None):
        self.clock.now += self.train

    def on_test_begin(self, logs=None):
        self.clock.now += self.validation


def fit_timed(validation: bool) -> list[float]:
    fake = FakeClock()
    clock = TrainingClock(clock=fake)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((8, 2), np.float32), np.zeros((8, 1), np.float32)
    # Two training batches of 4 per epoch; the clock's callback runs before the one that moves time.
    model.fit(
        x,
        y,
        batch_size=4,
        epochs=3,
        validation_data=(x, y) if validation else None,
        callbacks=[clock, Advance(fake, train=0.25, validation=100.0)],
        verbose=0,
    )
    return clock.seconds


def test_the_training_clock_leaves_validation_out() -> None:
    # Each epoch trains for 2 × 0.25 s of fake time; its validation pass, 100 s, is not counted.
    assert fit_timed(validation=True) == [0.5, 0.5, 0.5]
    assert fit_timed(validation=False) == [0.5, 0.5, 0.5]


def test_throughput_line() -> None:
    assert throughput(100, [2.0, 0.5, 0.5]) == "epoch 1 (with tracing) 2.0 s; epochs 2-3: 200.0 images/s"
    assert throughput(100, [2.0]) == "epoch 1 (with tracing) 2.0 s: 50.0 images/s"
    assert throughput(100, [2.0, 0.25]) == "epoch 1 (with tracing) 2.0 s; epoch 2: 400.0 images/s"
