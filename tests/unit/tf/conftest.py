"""The unit tests that are about TensorFlow/Keras code: the fine-tuning package, the Keras head and the
Keras half of the losses.

They are kept apart so that the rest of tests/unit/ never loads TensorFlow. Where TensorFlow or Keras is
not installed, this folder is left out of the run (its modules import them at the top).
"""

from __future__ import annotations

import importlib.util

collect_ignore_glob = [] if all(importlib.util.find_spec(name) for name in ("tensorflow", "keras")) else ["test_*.py"]
