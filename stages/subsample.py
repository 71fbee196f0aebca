"""A fixed, seeded, stratified train/val/test split of data/raw, decoded and resized once, with its labels
table, the data summary (stages.lib.data.prepare) and the training pool's and the validation set's true labels
in the label files' format. The validation set comes from outside the training pool, never from the test
set: it is what chooses the epoch (train.select_epoch), with labels as noisy as the training pool's.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from tqdm import tqdm

from stages.lib.core.errors import UserError, run_stage
from stages.lib.core.io import (
    DATA_SUMMARY,
    LABELS_TABLE,
    RAW_DIR,
    SPLITS,
    images_path,
    save_array,
    write_csv,
    write_json,
)
from stages.lib.core.params import read_params
from stages.lib.core.variants import label_file
from stages.lib.data.duplicates import find_duplicates
from stages.lib.data.images import decode_images, scan_folder
from stages.lib.data.prepare import (
    check_classes,
    check_positive_class,
    conversions_line,
    data_summary,
    decoder_warnings_line,
    labels_table,
    oversized_line,
)
from stages.lib.data.split import binary_or_class_labels, check_sizes, stratified_split


def main() -> None:
    params = read_params()
    data, task, seed = params.data, params.task, params.seed

    scan = scan_folder(RAW_DIR)
    # What can be checked from the file names is checked before the minutes of decoding.
    check_classes(scan.classes, data.source)
    if task == "binary":
        check_positive_class(data.positive_class, scan.classes)
    check_sizes(data.train_size, data.test_size, len(scan.images), f"image files in {RAW_DIR}", data.val_size)
    paths = [scan.root / rel for rel, _ in scan.images]
    decoded = decode_images(
        paths, data.image_size, progress=lambda it: tqdm(it, total=len(paths), desc="decode", unit="img")
    )
    if not decoded.good:
        raise UserError(
            f"{RAW_DIR} (from data.source = {data.source!r}): none of the {len(paths)} image files could be read"
        )
    decoded_files = [scan.images[i][0] for i in decoded.good]
    decoded_classes = [scan.images[i][1] for i in decoded.good]
    duplicates = find_duplicates(decoded_files, decoded_classes, decoded.digests, data.duplicates)
    files = [decoded_files[i] for i in duplicates.used]
    classes = [decoded_classes[i] for i in duplicates.used]
    class_names = tuple(sorted(set(classes)))
    # A class whose every file is unreadable (or a duplicate left out) is gone now: the same checks on what is left.
    check_classes(class_names, data.source, after="after skipping the unreadable images and duplicates, ")
    if task == "binary" and data.positive_class not in class_names:
        raise UserError(f"data.positive_class = {data.positive_class!r}: none of its image files could be read")
    labels = binary_or_class_labels(classes, class_names, task, data.positive_class)
    train, val, test = stratified_split(classes, data.train_size, data.test_size, seed, data.val_size)
    table = labels_table(files, classes, labels, (train, val, test))

    # The .npy rows follow the table's row order within each split (sorted by id); an id is a position in
    # `files`, whose pixels are decoded.pixels[duplicates.used[id]].
    # Always all three files (val with 0 rows when data.val_size is 0): DVC's outputs are static.
    rows = np.asarray(duplicates.used)
    for name in SPLITS:
        save_array(images_path(name), decoded.pixels[rows[table.loc[table["split"] == name, "id"].to_numpy()]])
    # Training rows first, then validation rows, each in id order.
    clean = pd.concat([table[table["split"] == name] for name in ("train", "val")])[["id", "label", "split"]]
    clean = clean.assign(clean_label=clean["label"], flipped=False)
    write_csv(label_file("clean"), clean[["id", "clean_label", "label", "flipped", "split"]])
    summary = data_summary(data, task, scan, decoded, classes, table, duplicates)
    write_json(DATA_SUMMARY, summary)
    write_csv(LABELS_TABLE, table)  # written last: its presence marks a complete stage
    print(
        f"subsample: {len(decoded.good)} images decoded, {len(decoded.failed)} unreadable and "
        f"{len(scan.stray_files)} non-image files skipped; train {len(train)}, val {len(val)}, test {len(test)} "
        f"at {data.image_size}px",
        file=sys.stderr,
    )
    lines = (
        conversions_line(summary["converted"]),
        oversized_line(summary),
        decoder_warnings_line(summary),
        duplicates.line(data.duplicates),
    )
    for line in lines:
        if line is not None:
            print(f"subsample: {line}", file=sys.stderr)


if __name__ == "__main__":
    run_stage("subsample", main)
