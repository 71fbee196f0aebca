"""Importing TensorFlow and Keras without their C++ start-up chatter.

TensorFlow 2.21 logs through absl before absl is initialised, which ignores TF_CPP_MIN_LOG_LEVEL: every
import prints a dozen lines (oneDNN notices, CUDA probing) to stderr, burying a stage's own messages.
While TensorFlow loads and probes its devices, stderr is captured at the file-descriptor level and
dropped, or replayed if the import fails. Set TF_CPP_MIN_LOG_LEVEL=0 to see everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

# Quiet unless the user asked for TF's logs: set before anything (Keras, tensorflow-datasets) loads TensorFlow, as
# every stage that loads it imports this module first.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _stderr_captured() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file; if the block raises, write what it caught back."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                capture.seek(0)
                os.write(2, capture.read())


def import_tensorflow() -> ModuleType:
    """`tensorflow`, imported (with Keras) and its devices probed, quietly unless the user asked for TF's logs."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") not in ("", "0", "1")
    with _stderr_captured() if quiet else contextlib.nullcontext():
        import keras  # noqa: F401  (loads TensorFlow as its backend)
        import tensorflow as tf

        tf.config.list_physical_devices()  # CUDA probing logs here, on the first device query
    return tf
