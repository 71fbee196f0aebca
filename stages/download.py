"""Put tf_flowers into data/raw/<class name>/<image> from `data.source` (stages.lib.data.fetch): downloaded with
tensorflow-datasets, or copied from a local folder or archive.
"""

from __future__ import annotations

import sys

from stages.lib.core.errors import run_stage
from stages.lib.core.io import RAW_DIR, atomic_dir
from stages.lib.core.params import read_params
from stages.lib.data.fetch import fetch


def main() -> None:
    source = read_params().data.source
    with atomic_dir(RAW_DIR) as staging:
        count, left_out = fetch(source, staging)
    note = f"; not copied, beside the class folders: {', '.join(left_out)}" if left_out else ""
    print(f"download: {count} image files from {source} into {RAW_DIR}/{note}", file=sys.stderr)


if __name__ == "__main__":
    run_stage("download", main)
