"""The tf.data input pipeline for fine-tuning: prepared uint8 images in, preprocessed batches out.

The images are read once from the (memory-mapped) .npy in file order and cached in memory; each epoch
then reshuffles them with a seeded shuffle, optionally augments each image, batches, applies ResNet50's
preprocessing and prefetches, so the accelerator never waits for the host. Every random choice is
seeded: the same seed gives the same batches, epoch after epoch, run after run.
"""

from __future__ import annotations

import numpy as np

# Light augmentation: shift by up to this fraction of the side (reflect-padded), and mirror left-right.
SHIFT_FRACTION = 0.125


def _rows(images: np.ndarray):
    """The images one by one, in file order (reads a memory-mapped array lazily, row by row)."""
    for index in range(len(images)):
        yield np.asarray(images[index])


def augment_image(image, seed):
    """Mirror left-right with probability 1/2, then shift by up to SHIFT_FRACTION of the side.

    `image` is one (S, S, 3) uint8 image; `seed` a (2,) integer tensor (stateless ops: the same seed,
    the same result, and no hidden state to serialise under op determinism).
    """
    import tensorflow as tf

    flip_seed, shift_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    size = image.shape[0]
    pad = max(1, round(size * SHIFT_FRACTION))
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    return tf.image.stateless_random_crop(padded, size=image.shape, seed=shift_seed)


def preprocess_batch(images):
    """uint8 images → float32 in ResNet50's input convention (Keras' caffe-mode preprocess_input)."""
    import keras
    import tensorflow as tf

    return keras.applications.resnet50.preprocess_input(tf.cast(images, tf.float32))


def image_pipeline(
    images: np.ndarray,
    targets: np.ndarray | None = None,
    *,
    batch_size: int,
    shuffle_seed: int | None = None,
    augment: bool = False,
):
    """A tf.data.Dataset of preprocessed image batches (with their targets, when given).

    `images`: N×S×S×3 uint8 (a memory-mapped .npy is fine: it is read once, then cached in memory).
    `targets`: N rows (e.g. (N, 1) floats or one-hot (N, K)), or None for prediction.
    `shuffle_seed`: None keeps file order (evaluation, prediction); an integer reshuffles every epoch,
    in an order fixed by the seed. `augment` (training only) mirrors and shifts each image, with its own
    seeded randomness per image and epoch.
    """
    import tensorflow as tf

    count, size = len(images), images.shape[1]
    if targets is not None and len(targets) != count:
        raise ValueError(f"{count} images but {len(targets)} targets")
    if augment and shuffle_seed is None:
        raise ValueError("augment needs a seed: pass shuffle_seed")
    dataset = tf.data.Dataset.from_generator(
        lambda: _rows(images), output_signature=tf.TensorSpec((size, size, 3), tf.uint8)
    )
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(count)).cache()
    if targets is not None:
        labels = tf.data.Dataset.from_tensor_slices(np.asarray(targets, dtype=np.float32))
        dataset = tf.data.Dataset.zip(dataset, labels)
    if shuffle_seed is not None:
        # The whole set fits the buffer: a uniform shuffle, different each epoch, the same run after run.
        dataset = dataset.shuffle(count, seed=shuffle_seed, reshuffle_each_iteration=True)
    if augment:
        # Two draws per image and epoch (a stateless seed is a pair), rerandomised every epoch.
        seeds = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(
            lambda example, seed: _augment_example(example, seed), num_parallel_calls=tf.data.AUTOTUNE
        )
    dataset = dataset.batch(batch_size).map(_preprocess_example, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _augment_example(example, seed):
    if isinstance(example, tuple):
        image, target = example
        return augment_image(image, seed), target
    return augment_image(example, seed)


def _preprocess_example(*example):
    if len(example) == 2:
        return preprocess_batch(example[0]), example[1]
    return preprocess_batch(example[0])
