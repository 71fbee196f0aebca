"""The noise sweep's report: balanced accuracy against noise rate for every loss, and each loss's gain over the
tuned BCE, over all experiments of the repo.

`python -m report` reads every finished run that `dvc exp show` lists (the workspace, HEAD's commit
and the experiments run from it; `--all-commits` for every commit's), with their detail files
(metrics/details/, through DVC), and writes reports/noise_curve.png (report.figure: balanced
accuracy, the verdict comparisons against the tuned BCE with their 95 % intervals, AUC and accuracy,
against the noise rate or the realised flip rate) and reports/results.md (one table per metric: a row per
noise level, a column per variant, mean ± std over seeds; what the noise costs each loss, split into the
noisy training labels' and the noisy selection's share (the oracle twins); per noise level, the paired
comparisons with the differences significant after Holm's correction marked, over each level's or (`--holm
sweep`) the whole sweep's comparisons; and how confident learning found the flipped labels). From the
workspace's data, if the detect stage has run there: reports/label_issues.png, the top suspected label errors.

Not a DVC stage: its input is the set of experiments, which lives in git refs rather than in files one
run of the pipeline could depend on. It only reads: nothing in the workspace or the experiments changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from report.experiments import exp_show_json, parse_runs, with_details
from report.figure import draw_noise_curves
from report.label_issues import draw_label_issues, top_suspects
from report.sweep import group_sweeps
from report.tables import HOLM_FAMILIES, markdown_report
from stages.lib.core.errors import UserError
from stages.lib.core.io import atomic_path, images_path, label_names, load_array, read_csv, read_prepared
from stages.lib.core.variants import ISSUES_FILE

REPORTS_DIR = Path("reports")
FIGURE_NAME = "noise_curve.png"
TABLE_NAME = "results.md"
ISSUES_NAME = "label_issues.png"
NO_RUNS = (
    "no finished experiment with metrics yet: run the pipeline first, e.g. "
    "`dvc exp run --queue -S 'noise=0,0.1,0.3,0.5,0.7,0.9'` then `dvc queue start` (or `dvc repro`)"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m report", description=__doc__.splitlines()[0])
    parser.add_argument("--all-commits", action="store_true", help="include experiments of every commit, not HEAD's")
    parser.add_argument("--out", type=Path, default=REPORTS_DIR, help=f"output folder (default: {REPORTS_DIR})")
    parser.add_argument("--suspects", type=int, default=32, help="thumbnails in label_issues.png (default: 32)")
    parser.add_argument(
        "--holm",
        choices=HOLM_FAMILIES,
        default="experiment",
        help="Holm's family in results.md: each noise level's comparisons (default), or the whole sweep's",
    )
    args = parser.parse_args(argv)

    runs, skipped = parse_runs(exp_show_json(".", all_commits=args.all_commits))
    runs, stale = with_details(runs)
    skipped += stale
    for row in skipped:
        print(f"report: left out {row.name}: {row.reason}", file=sys.stderr)
    if not runs:
        raise UserError(NO_RUNS)
    sweeps = group_sweeps(runs)

    args.out.mkdir(parents=True, exist_ok=True)
    figure_path, table_path = args.out / FIGURE_NAME, args.out / TABLE_NAME
    draw_noise_curves(sweeps, figure_path)
    with atomic_path(table_path) as tmp:
        tmp.write_text(markdown_report(sweeps, skipped, figure=FIGURE_NAME, holm_family=args.holm))
    for sweep in sweeps:
        levels = ", ".join(f"{noise:g}" for noise in sweep.noise_levels)
        print(f"report: sweep of {len(sweep.runs)} runs at noise {levels}", file=sys.stderr)
    print(f"report: wrote {figure_path} and {table_path}", file=sys.stderr)
    if ISSUES_FILE.exists() and images_path("train").exists():
        issues_path = args.out / ISSUES_NAME
        draw_workspace_issues(issues_path, args.suspects)
        print(f"report: wrote {issues_path} (the workspace's top {args.suspects} suspects)", file=sys.stderr)


def draw_workspace_issues(path: Path, count: int) -> None:
    """The top suspects of the workspace's first seed, on the workspace's prepared training images."""
    issues = read_csv(ISSUES_FILE)
    if issues.empty:
        return
    table, report = read_prepared()
    train_ids = table.loc[table["split"] == "train", "id"].to_numpy()
    suspects = top_suspects(issues, seed=int(issues["seed"].iloc[0]), count=count)
    names = label_names(report)
    draw_label_issues(load_array(images_path("train"), mmap=True), train_ids, suspects, names, path)
