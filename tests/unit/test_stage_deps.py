"""Every project module a stage's command runs is one of that stage's deps in dvc.yaml (a file or a folder
dep), so that editing it reruns the stage: "only what changed reruns" holds for code too.

The closure is static: every `import` and `from ... import` in a module, function-level ones included,
followed through the project's own modules (and the packages above them, whose __init__ runs on import).
A package marker without code (stages/__init__.py's docstring) shapes nothing and is left out.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path, package: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    return names


def closure(module: str) -> set[Path]:
    """The project files importing `module` runs."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += [found for found in imported_names(path, package) if module_file(found) is not None]
    return {path for path in seen if not (path.name == "__init__.py" and _is_marker(path))}


def _is_marker(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in tree.body)


def command_modules(stage: dict) -> list[str]:
    tokens = str(stage["cmd"]).split()
    return [tokens[i + 1] for i, token in enumerate(tokens[:-1]) if token == "-m"]


def missing_deps(stage: dict) -> set[str]:
    """The project files the stage's command runs that none of its deps (file or folder) covers."""
    deps = [str(dep).rstrip("/") for dep in stage.get("deps", [])]
    files = set().union(*(closure(module) for module in command_modules(stage)))
    relative = {str(path.relative_to(ROOT)) for path in files}
    return {f for f in relative if not any(f == dep or f.startswith(dep + "/") for dep in deps)}


@pytest.mark.parametrize("name", list(DVC_YAML["stages"]))
def test_every_module_a_stage_runs_is_one_of_its_deps(name: str) -> None:
    stage = DVC_YAML["stages"][name]
    assert command_modules(stage), f"{name}: no `python -m` module in its cmd"
    assert missing_deps(stage) == set(), f"{name} runs code dvc.yaml does not list as its deps"


def test_removing_a_dep_is_caught() -> None:
    stage = copy.deepcopy(DVC_YAML["stages"]["evaluate"])
    stage["deps"].remove("stages/lib/evaluate")
    assert missing_deps(stage) == {f"stages/lib/evaluate/{name}.py" for name in ("comparisons", "metrics", "scoring")}


def test_the_closure_follows_function_level_imports() -> None:
    # evaluate's stages.lib.evaluate.scoring imports stages.lib.losses inside a function only.
    assert ROOT / "stages/lib/losses/__init__.py" in closure("stages.evaluate")


def test_embed_does_not_run_the_heads_losses_or_the_report() -> None:
    """A stage's closure stays small: embed must not rerun because a loss, a trainer, a metric or the report
    changed (the losses' own params are checked by the stages that use them, stages.lib.losses.settings)."""
    files = {str(path.relative_to(ROOT)) for path in closure("stages.embed")}
    later = ("stages/lib/losses/", "stages/lib/train/", "stages/lib/evaluate/", "report/")
    assert not any(f.startswith(later) for f in files)
    for stage in ("stages.download", "stages.subsample", "stages.corrupt"):
        assert not any(str(path.relative_to(ROOT)).startswith("stages/lib/losses/") for path in closure(stage))


@pytest.mark.parametrize("name", list(DVC_YAML["stages"]))
def test_no_stage_depends_on_project_code_it_does_not_run(name: str) -> None:
    """The other half of "only what changed reruns": an edit to code a stage never runs reruns nothing."""
    stage = DVC_YAML["stages"][name]
    files = {str(path.relative_to(ROOT)) for module in command_modules(stage) for path in closure(module)}
    code = [str(dep).rstrip("/") for dep in stage["deps"] if str(dep).startswith(("stages", "report"))]
    extra = [dep for dep in code if not any(f == dep or f.startswith(dep + "/") for f in files)]
    assert extra == [], f"{name} depends on code it does not run"
