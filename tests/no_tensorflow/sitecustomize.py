"""On PYTHONPATH, this hides TensorFlow from every Python process started with it, as on a GPU machine
without TensorFlow: the JAX tests run the stages under it to prove they never load TensorFlow.

Python's path finder is made to find no `tensorflow` (nor tensorflow_datasets, tf_keras): `import
tensorflow` raises ModuleNotFoundError and `importlib.util.find_spec("tensorflow")` is None, exactly as when
it is not installed (libraries that probe for it and cope behave as they would there). Each lookup is
appended to the file named by $NO_TENSORFLOW_LOG (when set), so a test can see who looked.

With $ONLY_SITE_PACKAGES (comma-separated top-level names), every package of this environment's
site-packages but those is hidden the same way, as on a machine that has only them: the GPU kit's test
gives JAX's own packages, and the kit's wheels (on PYTHONPATH, outside site-packages) must bring the rest.
"""

from __future__ import annotations

import os
import site
from importlib.machinery import PathFinder

BLOCKED = ("tensorflow", "tensorflow_datasets", "tf_keras")
ONLY = {name for name in os.environ.get("ONLY_SITE_PACKAGES", "").split(",") if name}
SITE_PACKAGES = tuple(os.path.realpath(folder) + os.sep for folder in site.getsitepackages())
_find_spec = PathFinder.find_spec


def _hidden(fullname: str, spec) -> bool:
    if fullname.split(".")[0] in BLOCKED:
        return True
    if not ONLY or spec is None or fullname.split(".")[0] in ONLY or not spec.origin:
        return False
    return os.path.realpath(spec.origin).startswith(SITE_PACKAGES)


def _find_spec_without_tensorflow(fullname, path=None, target=None):
    spec = None if fullname.split(".")[0] in BLOCKED else _find_spec(fullname, path, target)
    if _hidden(fullname, spec):
        log = os.environ.get("NO_TENSORFLOW_LOG")
        if log:
            with open(log, "a") as lookups:
                lookups.write(f"{fullname}\n")
        return None
    return spec


PathFinder.find_spec = staticmethod(_find_spec_without_tensorflow)
