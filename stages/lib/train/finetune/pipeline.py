"""The fine-tuning input pipeline, the same on every Keras backend: prepared uint8 images in, preprocessed
batches out, as a `keras.utils.PyDataset` over the decoded arrays (no tf.data: JAX and torch machines
often have no TensorFlow).

The images are read once from the (memory-mapped) .npy into memory. Each epoch reshuffles them in an
order drawn from (seed, epoch), optionally augments each batch from a NumPy generator seeded by
(seed, epoch, batch), and applies ResNet50's preprocessing (stages.lib.backbone.resnet.preprocess). Every draw
depends only on those numbers, not on which worker thread makes the batch or in which order: the same
seed gives the same batches, epoch after epoch, run after run, backend after backend; and a run resumed
at epoch e sees exactly the batches an uninterrupted one would. fit tells the dataset its epoch through
`epoch_follower` (list that callback in every fit on a shuffled pipeline).
"""

from __future__ import annotations

import numpy as np

from stages.lib.backbone.resnet import preprocess

# Light augmentation: shift by up to this fraction of the side (reflect-padded), and mirror left-right.
SHIFT_FRACTION = 0.125
# Host threads preparing batches ahead of the accelerator (NumPy releases the GIL in its array operations),
# on TensorFlow. On JAX, with 4 threads, training came out different from the same batches fetched in
# order (a 6 % different weight update in a 2-epoch test, measured; TensorFlow's matched): one thread
# there until that is understood.
WORKERS = {"tensorflow": 4}


def augment_batch(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image mirrored left-right with probability 1/2, then shifted by up to SHIFT_FRACTION of the
    side in each direction (the padding reflects the image). `images`: B×S×S×3; a new array."""
    count, size = len(images), images.shape[1]
    pad = max(1, round(size * SHIFT_FRACTION))
    flips = rng.random(count) < 0.5
    offsets = rng.integers(0, 2 * pad + 1, size=(count, 2))  # top-left corner of the crop in the padded image
    images = np.where(flips[:, None, None, None], images[:, :, ::-1], images)
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    return np.stack([padded[i, y : y + size, x : x + size] for i, (y, x) in enumerate(offsets)])


def _py_dataset_base():
    import keras

    return keras.utils.PyDataset


def image_pipeline(
    images: np.ndarray,
    targets: np.ndarray | None = None,
    *,
    batch_size: int,
    shuffle_seed: int | None = None,
    augment: bool = False,
    first_epoch: int = 0,
):
    """A keras.utils.PyDataset of preprocessed float32 image batches (with their targets, when given).

    `images`: N×S×S×3 uint8 (a memory-mapped .npy is fine: it is read into memory once).
    `targets`: N rows (e.g. (N, 1) floats or one-hot (N, K)), or None for prediction.
    `shuffle_seed`: None keeps file order (evaluation, prediction); an integer reshuffles every epoch,
    in an order fixed by (seed, epoch). `augment` (training only) mirrors and shifts each image, drawn
    from (seed, epoch, batch). `first_epoch`: the epoch (from 0) the first pass is, for a resumed run.
    """
    count = len(images)
    if targets is not None and len(targets) != count:
        raise ValueError(f"{count} images but {len(targets)} targets")
    if augment and shuffle_seed is None:
        raise ValueError("augment needs a seed: pass shuffle_seed")

    class ImageBatches(_py_dataset_base()):
        def __init__(self) -> None:
            import keras

            super().__init__(workers=WORKERS.get(keras.backend.backend(), 1), use_multiprocessing=False)
            self.images = np.ascontiguousarray(images)  # reads a memory-mapped file once
            self.targets = None if targets is None else np.asarray(targets, dtype=np.float32)
            self.order = self._order_of(first_epoch)

        def _order_of(self, epoch: int) -> np.ndarray:
            self.epoch = epoch
            if shuffle_seed is None:
                return np.arange(count)
            return np.random.default_rng([shuffle_seed, epoch]).permutation(count)

        def set_epoch(self, epoch: int) -> None:
            """Draw the batches of `epoch` (from 0) from now on."""
            self.order = self._order_of(epoch)

        def __len__(self) -> int:
            return -(-count // batch_size)

        def __getitem__(self, index: int):
            rows = self.order[index * batch_size : (index + 1) * batch_size]
            batch = self.images[rows]
            if augment:
                batch = augment_batch(batch, np.random.default_rng([shuffle_seed, self.epoch, index]))
            x = preprocess(batch)
            return x if self.targets is None else (x, self.targets[rows])

    return ImageBatches()


def epoch_follower(batches):
    """A Keras callback telling `batches` (an image_pipeline) which epoch fit is at, before each epoch.

    fit passes the true epoch index (initial_epoch included). The dataset's own on_epoch_begin/end hooks
    are no count of epochs: Keras also calls them when it resets an iterator, differently per backend.
    """
    import keras

    class FollowEpochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            batches.set_epoch(epoch)

    return FollowEpochs()
