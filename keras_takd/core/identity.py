"""Identities of what a number depends on: a model's architecture, arrays, and code.

A cached result (an evaluation unit, a trained stage) is reused only when every identity it
was computed for matches the one asked for now; `differences` says which part differs, so a
refusal or a recomputation can name it in one line. TensorFlow-free: a `.keras` file is read
as the zip archive it is, and code is hashed from its source files without importing them.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import pathlib
import zipfile
from collections.abc import Iterator, Mapping

import numpy as np

from keras_takd.core import files

# Keys of a `.keras` config.json that do not change what the model computes.
_NOT_ARCHITECTURE = ("compile_config",)
_PACKAGE = "keras_takd"
_SHARED_ID = "shared_object_id"


def architecture_sha256(path: str | pathlib.Path) -> str:
    """A sha256 of the architecture saved in a `.keras` file (its config.json), canonical.

    Layer names are replaced by their order of first appearance, wherever they occur (as a
    layer's name or as a reference to it), so two trainings of one architecture in processes
    that built a different number of layers before hash alike. The ids Keras gives objects
    that layers shared when saved (`shared_object_id`, e.g. of one dtype policy: a memory
    address, present or not depending on how the model was built) are left out. Any change
    of a layer, its settings (e.g. `relu` -> `sigmoid`) or its wiring changes the hash. The
    compile configuration (optimizer, loss) is left out: it does not change what the model
    computes.

    Args:
        path: a `.keras` file.

    Returns:
        The hex digest.

    Raises:
        ValueError: `path` is not a `.keras` archive with a readable config.json.
    """
    try:  # opened as a regular file only: a FIFO would block
        with open(files.open_regular(path), "rb") as file, zipfile.ZipFile(file) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{path}: not a .keras file with a readable config.json ({error}): save the model "
            "again with model.save(...)"
        ) from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: config.json holds {type(config).__name__}, expected an object")
    config = {k: v for k, v in config.items() if k not in _NOT_ARCHITECTURE}
    names = {name: f"#{k}" for k, name in enumerate(dict.fromkeys(_layer_names(config)))}
    config = _without(_renamed(config, names), _SHARED_ID)
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _layer_names(value) -> Iterator[str]:
    """Every string under a "name" key, depth first, in the order of the config."""
    return (name for name in _values_of(value, "name") if isinstance(name, str))


def _values_of(value, name: str) -> Iterator:
    """Every value under a key `name`, depth first, in the order of the config."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == name:
                yield item
            else:
                yield from _values_of(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from _values_of(item, name)


def _without(value, name: str):
    """`value` without any key `name`, at any depth."""
    if isinstance(value, dict):
        return {key: _without(item, name) for key, item in value.items() if key != name}
    if isinstance(value, list):
        return [_without(item, name) for item in value]
    return value


def _renamed(value, names: Mapping[str, str]):
    if isinstance(value, dict):
        return {key: _renamed(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [_renamed(item, names) for item in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


def array_sha256(*arrays) -> str:
    """A sha256 of arrays' dtypes, shapes and values, in order (e.g. test images and labels).

    Args:
        *arrays: array-likes; each is hashed as a C-contiguous numpy array.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    for k, array in enumerate(arrays):
        array = np.ascontiguousarray(array)
        digest.update(f"{k}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def source_sha256(module: str) -> str:
    """A sha256 of a keras_takd module's source and of every keras_takd module it imports.

    Imports are followed transitively from the source text (nothing is imported): `import
    keras_takd.x`, `from keras_takd.x import y` (the submodule `keras_takd.x.y` if there is
    one, else the package `keras_takd.x`) and relative imports. Any edit of the code a result
    depends on changes the hash; edits elsewhere in the package do not.

    Args:
        module: a dotted module name inside keras_takd, e.g.
            "keras_takd.attacks.carlini_wagner.l2".

    Returns:
        The hex digest.

    Raises:
        ValueError: `module` is not a keras_takd module with a source file.
    """
    if module != _PACKAGE and not module.startswith(_PACKAGE + "."):
        raise ValueError(f"source_sha256 takes a keras_takd module, got {module!r}")
    digest = hashlib.sha256()
    for name in sorted(_closure(module)):
        digest.update(f"{name};".encode())
        digest.update(_source_file(name).read_bytes())
    return digest.hexdigest()


def _source_file(module: str) -> pathlib.Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"{module!r} is not a keras_takd module with a .py source file")
    return pathlib.Path(spec.origin)


def _closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _imports(name)
    return seen


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _imports(module: str) -> list[str]:
    """The keras_takd modules that `module`'s source imports."""
    path = _source_file(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            subs = [f"{base}.{alias.name}" for alias in node.names]
            found += [s for s in subs if _is_module(s)] or [base]
    return [name for name in found if name == _PACKAGE or name.startswith(_PACKAGE + ".")]


def differences(recorded: Mapping, wanted: Mapping) -> list[str]:
    """One phrase per identity of `wanted` that `recorded` lacks or holds another value of.

    Args:
        recorded: the identities a stored result was computed for.
        wanted: the identities asked for now.

    Returns:
        e.g. ["architecture_sha256 3f2a9c1b0d4e recorded, 77b0e2c51a9f now"]; empty if all
        match.
    """
    return [
        f"{key} {_short(recorded.get(key))} recorded, {_short(value)} now"
        for key, value in wanted.items()
        if recorded.get(key) != value
    ]


def _short(value) -> str:
    if value is None:
        return "none"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:12] if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text
