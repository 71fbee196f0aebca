"""The README's stage table, generated from dvc.yaml: each stage's `desc`, the data it reads (its deps that
are not code) and what it writes (outs, metrics, plots). dvc.yaml is the one place these are stated.

    python scripts/readme_tables.py           # rewrite the table in README.md
    python scripts/readme_tables.py --check   # exit 1 if README.md's table is stale (tests/unit/test_docs.py)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- stage table: generated from dvc.yaml by `python scripts/readme_tables.py`; edit dvc.yaml, not this -->"
END = "<!-- end of stage table -->"
SEPARATORS = "._-"


def is_code(path: str) -> bool:
    """Code deps are the stage's own modules: listed in dvc.yaml so edits rerun it, not data it reads."""
    return path.startswith("stages/") or path.endswith(".py")


def entry_path(entry: str | dict) -> str:
    """A deps/outs/metrics entry is a path or a one-key mapping of a path to its options (`cache: false`)."""
    return entry if isinstance(entry, str) else next(iter(entry))


def placeholder(path: str) -> str:
    """`${item.loss}` is the matrix value: written `<loss>`, as in the variant names."""
    return re.sub(r"\$\{item\.(\w+)\}", r"<\1>", path)


def _common_prefix(names: list[str]) -> str:
    """The longest prefix all names share, cut after a separator so that no word is split."""
    prefix = names[0]
    while prefix and not (all(name.startswith(prefix) for name in names) and prefix[-1] in SEPARATORS):
        prefix = prefix[:-1]
    return prefix


def _common_affixes(names: list[str]) -> tuple[str, str]:
    """The prefix and the suffix all names share, each whole words: `{train,val}_images.npy`."""
    prefix = _common_prefix(names)
    suffix = _common_prefix([name[len(prefix) :][::-1] for name in names])[::-1]
    return prefix, suffix


def compact(paths: list[str]) -> list[str]:
    """Paths in one folder with the same extension as one `folder/{a,b}.ext`; folders (no extension) end in `/`."""
    groups: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        folder, _, name = path.rpartition("/")
        groups.setdefault((folder, Path(name).suffix), []).append(name)
    written = []
    for (folder, ext), names in groups.items():
        head = f"{folder}/" if folder else ""
        if not ext:
            written += [f"{head}{name}/" for name in names]
        elif len(names) == 1:
            written.append(f"{head}{names[0]}")
        else:
            prefix, suffix = _common_affixes(names)
            middles = [name[len(prefix) : len(name) - len(suffix)] for name in names]
            written.append(f"{head}{prefix}{{{','.join(middles)}}}{suffix}")
    return written


def stage_name(name: str, stage: dict) -> str:
    if "matrix" in stage:
        return f"{name}@" + "-".join(f"<{key}>" for key in stage["matrix"])
    if "foreach" in stage:
        return f"{name}@<key>"
    return name


def _param(values: object) -> str:
    """`${train.losses}` -> `train.losses`; a literal list as written."""
    return re.sub(r"^\$\{(.+)\}$", r"\1", str(values))


def matrix_note(stage: dict) -> str:
    """`matrix: {loss: ${train.losses}, labels: ${train.labels}}` -> one per `train.losses` × `train.labels`."""
    if "matrix" in stage:
        return " One per " + " × ".join(f"`{_param(values)}`" for values in stage["matrix"].values()) + "."
    if "foreach" in stage:
        return f" One per `{_param(stage['foreach'])}`."
    return ""


def param_keys(params: dict, prefix: str = "") -> set[str]:
    """Every key of params.yaml, dotted (`model.fine_tune`), as `-S` names it."""
    keys = set()
    for key, value in params.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= param_keys(value, f"{prefix}{key}.")
    return keys


def marked_up(text: str, params: set[str]) -> str:
    """A desc in markdown: docs/x.md becomes a link, a param with a dot or an underscore in its name code
    (plain words such as `noise` or `seed` stay words)."""
    text = re.sub(r"\b(docs/[\w-]+\.md)\b", r"[\1](\1)", text)
    return re.sub(
        r"(?<![\w./`])([a-z]\w*(?:\.\w+)+|[a-z]+_\w+)(?![\w/`])",
        lambda m: f"`{m[1]}`" if m[1] in params else m[1],
        text,
    )


def cell(paths: list[str]) -> str:
    return ", ".join(f"`{path}`" for path in compact([placeholder(p) for p in paths])) or "—"


def stage_table(dvc_yaml: dict, params: dict) -> str:
    """The markdown table, one row per stage in dvc.yaml's order; a stage without `desc` is an error.
    params (params.yaml) tells which words of a desc are params."""
    keys = param_keys(params)
    rows = [
        "| stage | what it does | reads (besides its code and params) | writes |",
        "|---|---|---|---|",
    ]
    for name, stage in dvc_yaml["stages"].items():
        if not stage.get("desc"):
            raise ValueError(f"dvc.yaml: stage {name!r} has no desc: add one line saying what it does")
        reads = [p for p in map(entry_path, stage.get("deps", [])) if not is_code(p)]
        writes = [entry_path(e) for key in ("outs", "metrics", "plots") for e in stage.get(key, [])]
        what = marked_up(" ".join(str(stage["desc"]).split()), keys) + "." + matrix_note(stage)
        rows.append(f"| `{stage_name(name, stage)}` | {what} | {cell(reads)} | {cell(writes)} |")
    return "\n".join(rows) + "\n"


def with_table(readme: str, table: str) -> str:
    """README text with the block between the markers replaced by the table."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md: no stage table between {BEGIN!r} and {END!r}")
    return readme[: start + len(BEGIN)] + "\n" + table + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if README.md is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project (default: this script's)")
    args = parser.parse_args(argv)
    readme_path = args.root / "README.md"
    readme = readme_path.read_text()
    dvc_yaml, params = (yaml.safe_load((args.root / name).read_text()) for name in ("dvc.yaml", "params.yaml"))
    expected = with_table(readme, stage_table(dvc_yaml, params))
    if readme == expected:
        return 0
    if args.check:
        print(
            "README.md: the stage table differs from dvc.yaml: run `python scripts/readme_tables.py`", file=sys.stderr
        )
        return 1
    readme_path.write_text(expected)
    print("README.md: stage table rewritten from dvc.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
