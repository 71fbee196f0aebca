"""On PYTHONPATH, this hides TensorFlow from every Python process started with it, as on a GPU machine
without TensorFlow: the JAX tests run the stages under it to prove they never load TensorFlow.

Python's path finder is made to find no `tensorflow` (nor tensorflow_datasets, tf_keras): `import
tensorflow` raises ModuleNotFoundError and `importlib.util.find_spec("tensorflow")` is None, exactly as when
it is not installed (libraries that probe for it and cope behave as they would there). Each lookup is
appended to the file named by $NO_TENSORFLOW_LOG (when set), so a test can see who looked.
"""

from __future__ import annotations

import os
from importlib.machinery import PathFinder

BLOCKED = ("tensorflow", "tensorflow_datasets", "tf_keras")
_find_spec = PathFinder.find_spec


def _find_spec_without_tensorflow(fullname, path=None, target=None):
    if fullname.split(".")[0] in BLOCKED:
        log = os.environ.get("NO_TENSORFLOW_LOG")
        if log:
            with open(log, "a") as lookups:
                lookups.write(f"{fullname}\n")
        return None
    return _find_spec(fullname, path, target)


PathFinder.find_spec = staticmethod(_find_spec_without_tensorflow)
