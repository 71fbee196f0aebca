"""The fine-tuning input pipeline (a PyDataset, NumPy only): order fixed by the seed, batch shapes, preprocessing,
augmentation, resuming at an epoch."""

from __future__ import annotations

import numpy as np
import pytest

from stages.lib.train.finetune.pipeline import epoch_follower, image_pipeline

keras = pytest.importorskip("keras")

BLUE_MEAN = 103.939  # ImageNet's, as keras.applications.resnet50.preprocess_input subtracts it


def numbered_images(count: int, size: int = 32) -> np.ndarray:
    """Image i is uniformly grey level i: flips and shifts leave it unchanged, so it names itself."""
    return np.repeat(np.arange(count, dtype=np.uint8), size * size * 3).reshape(count, size, size, 3)


def image_number(batch: np.ndarray) -> np.ndarray:
    """Which numbered image each preprocessed one is (caffe mode: channel 0 is blue minus its mean)."""
    return np.rint(batch[:, 0, 0, 0] + BLUE_MEAN).astype(int)


def random_images(count: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)


def epoch(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    """The next epoch's batches (the pipeline told its epoch, as epoch_follower does in fit)."""
    dataset.set_epoch(getattr(dataset, "_epochs_read", dataset.epoch - 1) + 1)
    dataset._epochs_read = dataset.epoch
    return [(np.asarray(x), np.asarray(y)) for x, y in dataset]


def order(dataset) -> list[int]:
    return [int(i) for _, y in epoch(dataset) for i in y.ravel()]


def caffe(images: np.ndarray) -> np.ndarray:
    return keras.applications.resnet50.preprocess_input(images.astype(np.float32))


def test_without_a_seed_the_order_is_the_files_and_pixels_are_resnet_preprocessed() -> None:
    images = random_images(10)
    batches = [np.asarray(x) for x in image_pipeline(images, batch_size=4)]
    assert [b.shape for b in batches] == [(4, 32, 32, 3), (4, 32, 32, 3), (2, 32, 32, 3)]
    assert all(b.dtype == np.float32 for b in batches)
    np.testing.assert_allclose(np.concatenate(batches), caffe(images), rtol=0, atol=1e-4)


def test_batches_pair_each_image_with_its_own_target() -> None:
    images = numbered_images(9)
    targets = np.eye(3, dtype=np.float32)[np.arange(9) % 3]  # one-hot, as the multiclass task feeds them
    batches = epoch(image_pipeline(images, targets, batch_size=4, shuffle_seed=5))
    assert [(x.shape, y.shape) for x, y in batches] == [((4, 32, 32, 3), (4, 3))] * 2 + [((1, 32, 32, 3), (1, 3))]
    which = np.concatenate([image_number(x) for x, _ in batches])
    assert sorted(which) == list(range(9))
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), targets[which])


def test_the_seed_fixes_every_epochs_order_and_each_epoch_reshuffles() -> None:
    images, targets = numbered_images(24), np.arange(24, dtype=np.float32).reshape(-1, 1)
    first = image_pipeline(images, targets, batch_size=8, shuffle_seed=7)
    again = image_pipeline(images, targets, batch_size=8, shuffle_seed=7)
    other = image_pipeline(images, targets, batch_size=8, shuffle_seed=8)
    epochs = [order(first) for _ in range(3)]
    assert epochs == [order(again) for _ in range(3)]
    assert all(sorted(e) == list(range(24)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert order(other) != epochs[0]


def test_augmentation_is_off_unless_asked_for() -> None:
    images = random_images(6)
    targets = np.arange(6, dtype=np.float32).reshape(-1, 1)
    for _ in range(2):  # two epochs: the same pixels each time
        for x, y in epoch(image_pipeline(images, targets, batch_size=6, shuffle_seed=1)):
            np.testing.assert_allclose(x, caffe(images[y.ravel().astype(int)]), atol=1e-4)


def test_augmentation_flips_and_shifts_with_the_seed_and_keeps_labels() -> None:
    images = random_images(16)
    targets = np.arange(16, dtype=np.float32).reshape(-1, 1)
    augmented = image_pipeline(images, targets, batch_size=16, shuffle_seed=3, augment=True)
    (x1, y1), (x2, y2) = epoch(augmented)[0], epoch(augmented)[0]
    originals = caffe(images[y1.ravel().astype(int)])
    changed = [not np.allclose(a, b, atol=1e-4) for a, b in zip(x1, originals, strict=True)]
    assert sum(changed) >= 12  # a shift of 0 and no flip together are rare
    # Epoch 2 draws new flips and shifts; a second pipeline with the seed repeats epoch 1 exactly.
    assert not np.allclose(x1[np.argsort(y1.ravel())], x2[np.argsort(y2.ravel())])
    (x3, y3) = epoch(image_pipeline(images, targets, batch_size=16, shuffle_seed=3, augment=True))[0]
    np.testing.assert_array_equal(y1, y3)
    np.testing.assert_array_equal(x1, x3)
    # Constant images survive any flip or shift: the labels stay with their images.
    x4, y4 = epoch(image_pipeline(numbered_images(16), targets, batch_size=16, shuffle_seed=3, augment=True))[0]
    np.testing.assert_array_equal(image_number(x4), y4.ravel().astype(int))


def test_augmented_images_are_shifted_copies_not_new_pixels() -> None:
    """A shift moves pixels by at most 1/8 of the side; every output pixel comes from the image."""
    image = random_images(1, size=32)
    ((x, _),) = epoch(image_pipeline(image, np.zeros((1, 1), np.float32), batch_size=1, shuffle_seed=0, augment=True))
    source = caffe(image)[0]
    for candidate in (source, source[:, ::-1]):
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                inner = x[0][8:24, 8:24]
                window = candidate[8 + dy : 24 + dy, 8 + dx : 24 + dx]
                if np.allclose(inner, window, atol=1e-4):
                    return
    pytest.fail("the augmented image is not a flipped/shifted copy of the original")


def test_a_pipeline_resumed_at_an_epoch_gives_that_epochs_batches() -> None:
    images, targets = random_images(12), np.arange(12, dtype=np.float32).reshape(-1, 1)
    uninterrupted = image_pipeline(images, targets, batch_size=5, shuffle_seed=4, augment=True)
    epochs = [epoch(uninterrupted) for _ in range(3)]
    resumed = epoch(image_pipeline(images, targets, batch_size=5, shuffle_seed=4, augment=True, first_epoch=2))
    for (x, y), (x_resumed, y_resumed) in zip(epochs[2], resumed, strict=True):
        np.testing.assert_array_equal(y, y_resumed)
        np.testing.assert_array_equal(x, x_resumed)


def test_fit_trains_on_the_seeded_order_through_its_worker_threads() -> None:
    """Keras fetches batches in worker threads (and would reorder them unless fit's shuffle is False): the
    images the model is fed, batch by batch, are those of the (seed, epoch) order."""
    images, targets = numbered_images(12), np.arange(12, dtype=np.float32).reshape(-1, 1)
    fed: list[int] = []

    class Recorder(keras.layers.Layer):  # eager: sees the actual training batches
        def call(self, x, training=False):
            if training:
                fed.extend(image_number(np.asarray(x)).tolist())
            return keras.ops.mean(x, axis=(1, 2, 3))[:, None]

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(1)(Recorder()(inputs)))
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    expected = image_pipeline(images, targets, batch_size=4, shuffle_seed=9)
    orders = [order(expected) for _ in range(2)]
    batches = image_pipeline(images, targets, batch_size=4, shuffle_seed=9)
    model.fit(batches, epochs=2, callbacks=[epoch_follower(batches)], shuffle=False, verbose=0)
    assert fed == orders[0] + orders[1]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="targets"):
        image_pipeline(random_images(3), np.zeros((2, 1), np.float32), batch_size=2)
    with pytest.raises(ValueError, match="seed"):
        image_pipeline(random_images(3), np.zeros((3, 1), np.float32), batch_size=2, augment=True)
