"""What README.md and docs/ say that dvc.yaml or the code define, checked so that it cannot drift: the stage
table is generated from dvc.yaml (scripts/readme_tables.py), counts of losses and noise models are the
code's, every relative link and every path in docs/code.md's tree exists, and CI runs the README's test
command. docs/results/ is left out: `python -m report` writes it, at the commit it names."""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from toolkit.project import default_params

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
NUMBERS |= {"ten": 10, "eleven": 11, "twelve": 12}

_spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
readme_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_tables)


def counted_choices() -> dict[str, tuple[str, ...]]:
    """The lists whose length the docs state, by the noun they state it with: the one place to repoint when
    the code moves them."""
    from stages.lib.core.params import NOISE_TYPES
    from stages.lib.losses.settings import LOSS_NAMES

    return {"losses": tuple(LOSS_NAMES), "noise models": tuple(NOISE_TYPES)}


def dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def params_yaml() -> dict:
    return default_params()


def without_code_blocks(text: str) -> str:
    return re.sub(r"(?ms)^```.*?^```", "", text)


def code_block_after(text: str, marker: str) -> str:
    """The first fenced block after marker."""
    match = re.search(re.escape(marker) + r".*?^```\w*\n(.*?)^```", text, re.M | re.S)
    assert match, f"no code block after {marker!r}"
    return match[1]


# --- the stage table -------------------------------------------------------------------------------------


def test_readme_stage_table_is_generated_from_dvc_yaml():
    assert readme_tables.main(["--check"]) == 0, "run `python scripts/readme_tables.py`"


def test_the_table_has_a_row_per_stage_with_its_data_and_outputs():
    table = readme_tables.stage_table(dvc_yaml(), params_yaml())
    rows = {line.split("|")[1].strip(" `"): line for line in table.splitlines()[2:]}
    assert list(rows) == [
        f"{name}@<loss>-<labels>" if "matrix" in stage else name for name, stage in dvc_yaml()["stages"].items()
    ]
    embed = rows["embed"].split("|")
    assert "`data/features/{train,val,test}.npy`" in embed[4]
    assert "`data/prepared/{train,val,test}_images.npy`" in embed[3]
    assert "stages/" not in embed[3]  # code deps are not data it reads
    train = rows["train@<loss>-<labels>"]
    assert "`data/labels/<labels>.csv`" in train and "`models/<loss>-<labels>/`" in train
    assert "One per `train.losses` × `train.labels`." in train
    assert "`data.source`" in rows["download"]  # a param is code, a plain word is not
    assert "`metrics/noise.json`" in rows["corrupt"].split("|")[4]  # metrics are outputs too


def test_a_changed_dvc_yaml_makes_the_readme_stale():
    changed = copy.deepcopy(dvc_yaml())
    changed["stages"]["embed"]["outs"].append("data/features/extra.npy")
    readme = (ROOT / "README.md").read_text()
    table = readme_tables.stage_table(changed, params_yaml())
    assert "data/features/{train,val,test,extra}.npy" in table
    assert readme_tables.with_table(readme, table) != readme


def test_a_stage_without_desc_is_an_error():
    changed = copy.deepcopy(dvc_yaml())
    del changed["stages"]["detect"]["desc"]
    with pytest.raises(ValueError, match="'detect' has no desc"):
        readme_tables.stage_table(changed, params_yaml())


def test_compact_groups_a_folder_s_files_by_extension_without_splitting_words():
    paths = ["d/train_x.npy", "d/val_x.npy", "d/labels.csv", "d/main.npz", "d/train.npz", "raw", "d/one.json"]
    assert readme_tables.compact(paths) == [
        "d/{train,val}_x.npy",
        "d/labels.csv",
        "d/{main,train}.npz",
        "raw/",
        "d/one.json",
    ]


def test_the_dag_names_every_stage():
    dag = code_block_after((ROOT / "README.md").read_text(), "`dvc dag`:")
    missing = [name for name in dvc_yaml()["stages"] if not re.search(rf"\b{name}\b", dag)]
    assert not missing, f"README.md's dag does not show {missing}"


# --- counts ------------------------------------------------------------------------------------------------


def stated_counts(text: str, nouns: list[str]) -> list[tuple[int, str]]:
    """Each "<number> [robust ]<noun>" in text, as (number, noun): "seven losses" -> (7, "losses")."""
    words = "|".join([*NUMBERS, r"\d+"])
    pattern = rf"\b({words}) (?:robust )?({'|'.join(map(re.escape, nouns))})\b"
    return [(NUMBERS.get(n.lower()) or int(n), noun) for n, noun in re.findall(pattern, text, re.I)]


def test_stated_counts_reads_words_and_digits():
    assert stated_counts("the six losses, 3 noise models; Seven robust losses", ["losses", "noise models"]) == [
        (6, "losses"),
        (3, "noise models"),
        (7, "losses"),
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_counts_of_losses_and_noise_models_are_the_code_s(page):
    # A count in words is read as the total: name a subset by its members ("bce and l1"), not "two losses".
    choices = counted_choices()
    wrong = [
        f"{n} {noun} (the code has {len(choices[noun])})"
        for n, noun in stated_counts(page.read_text(), list(choices))
        if n != len(choices[noun])
    ]
    assert not wrong, f"{page.relative_to(ROOT)}: {wrong}"


# --- links and paths ---------------------------------------------------------------------------------------


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = without_code_blocks(page.read_text())
    return {anchor(h) for h in re.findall(r"(?m)^#+ (.+)$", text)}


def test_anchor_follows_github():
    assert anchor("Paired comparisons (`metrics/comparisons.json`)") == "paired-comparisons-metricscomparisonsjson"
    assert anchor("The pipeline") == "the-pipeline"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_existing_files_and_headings(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", without_code_blocks(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def tree_paths(block: str) -> list[str]:
    """The paths a layout tree names: the leading tokens of each line that end in `/` or have an extension
    (the rest is the description). A line that names one folder alone is the parent of the lines below it
    indented two spaces more."""
    parents: list[str] = []
    paths = []
    for line in block.splitlines():
        parents = parents[: (len(line) - len(line.lstrip())) // 2]
        named = []
        for token in line.split():
            if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*(/|\.\w+)", token):
                break
            named.append(token)
        paths += ["".join(parents) + token for token in named]
        if len(named) == 1 and named[0].endswith("/"):
            parents.append(named[0])
    return paths


def test_tree_paths_nest_by_indentation():
    block = "a/        x\n  b/      y\n    c.py  d.py   z\n  e.py\nf/  g/   h\n"
    assert tree_paths(block) == ["a/", "a/b/", "a/b/c.py", "a/b/d.py", "a/e.py", "f/", "g/"]


def test_docs_code_tree_names_existing_paths_and_every_library_module():
    paths = tree_paths(code_block_after((ROOT / "docs" / "code.md").read_text(), "# Where the code is"))
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"docs/code.md names paths that do not exist: {missing}"
    library = {
        f"stages/lib/{p.name}" + ("/" if p.is_dir() else "")
        for p in (ROOT / "stages" / "lib").iterdir()
        if not p.name.startswith(("_", ".")) and (p.suffix == ".py" or (p / "__init__.py").exists())
    }
    assert not library - set(paths), f"docs/code.md's tree leaves out {sorted(library - set(paths))}"


# --- the test command ------------------------------------------------------------------------------------


def test_ci_runs_the_readme_s_test_command_over_the_whole_suite():
    """.ci/run runs `python -m pytest` in two passes, `-m "not serial"` and `-m serial`: together the whole
    suite, nothing left out by a path, a -k or another marker."""
    tests = code_block_after((ROOT / "README.md").read_text(), "## Tests")
    assert re.search(r"(?m)^python -m pytest\s", tests), "README.md's Tests block lost `python -m pytest`"
    passes = re.findall(r"(?m)^PATH=\S+ python -m pytest (.*)$", (ROOT / ".ci" / "run").read_text())
    selections = [re.findall(r'-m ("[^"]+"|\S+)', options) for options in passes]
    assert sorted(selections) == [['"not serial"'], ["serial"]], passes
    for options in passes:
        assert not re.search(r"(^|\s)(-k|--deselect|--ignore|tests/)", options), options
