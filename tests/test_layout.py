"""The package's layout is its architecture: a core, the attacks, one wing per study.

`keras_takd.core` and `keras_takd.attacks` import no study; the studies (`keras_takd.takd`,
Mandal & Guo; `keras_takd.smoothed`, Katz & Reches) never import each other; no module
imports a command module to borrow its flags (only the `keras_takd.main` shim runs one, and the
study command takes training's and evaluation's flags from their modules).
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_takd"
ROLES = ("core", "attacks", "takd", "smoothed")
# What each part may import from keras_takd, besides itself.
ALLOWED = {
    "core": set(),
    "attacks": {"core"},
    "takd": {"core", "attacks"},
    "smoothed": {"core", "attacks"},
}
COMMANDS = {
    "keras_takd.takd.train",
    "keras_takd.takd.evaluate",
    "keras_takd.takd.merge",
    "keras_takd.takd.figures",
    "keras_takd.takd.claims",
    "keras_takd.takd.summary",
    "keras_takd.smoothed.run",
}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every keras_takd module a file imports (at any depth, lazily or not)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("keras_takd")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_takd"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_folder_is_one_of_the_four_roles():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(ROLES)
    top_modules = {p.name for p in PACKAGE.glob("*.py")}
    assert top_modules == {"__init__.py", "main.py"}


@pytest.mark.parametrize(
    "name", sorted(n for n in MODULES if n.split(".")[1:2] in [[r] for r in ROLES])
)
def test_imports_follow_the_layers(name):
    role = name.split(".")[1]
    allowed = ALLOWED[role] | {role}
    for imported in _imports(MODULES[name]):
        parts = imported.split(".")
        if len(parts) < 2 or parts[1] not in ROLES:
            continue
        assert parts[1] in allowed, f"{name} ({role}) imports {imported}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_a_command_module(name):
    imported = _imports(MODULES[name]) & COMMANDS
    if name == "keras_takd.main":  # the design's `python -m keras_takd.main` shim
        assert imported == {"keras_takd.takd.train"}
    elif name == "keras_takd.takd.study.__main__":  # one command over both commands' flags
        assert imported == {"keras_takd.takd.train", "keras_takd.takd.evaluate"}
    else:
        assert not imported, f"{name} imports the command module(s) {sorted(imported)}"
