"""Writing models and tables so that a kill never leaves a truncated file a rerun would trust.

Every writer here writes into a temporary name in the destination folder and renames it into
place (`os.replace` is atomic on POSIX), and SavedModels are exported with two endpoints for
TF Serving: `serve` (float32 images [None, H, W, C] in [0, 1] -> logits) and `probabilities`
(softmax at T = 1).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile

import keras
import pandas as pd
import tensorflow as tf


def _temporary_sibling(path: pathlib.Path, directory: bool = False) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    if directory:
        return pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return pathlib.Path(name)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename."""
    path = pathlib.Path(path)
    tmp = _temporary_sibling(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, data: dict) -> None:
    """Writes `data` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_csv_atomic(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Writes `frame` as CSV without its index, atomically."""
    write_text_atomic(path, frame.to_csv(index=False))


def save_model_atomic(model: keras.Model, path: str | os.PathLike) -> None:
    """Saves a `.keras` file through a temporary file and a rename."""
    path = pathlib.Path(path)
    tmp = _temporary_sibling(path)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_saved_model(model: keras.Model, path: str | os.PathLike) -> pathlib.Path:
    """Exports a logits model as a TF SavedModel for serving, atomically.

    Endpoints: `serve(images) -> logits` and `probabilities(images) -> softmax(logits)`,
    with `images` float32 [None, H, W, C] in [0, 1]. An existing folder at `path` (left by an
    interrupted run of the same stage) is replaced only once the new export is complete.

    Args:
        model: a Keras model mapping images to logits.
        path: destination folder.

    Returns:
        The folder written.
    """
    path = pathlib.Path(path)
    signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="images")]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve", lambda images: model(images, training=False), input_signature=signature
    )
    archive.add_endpoint(
        "probabilities",
        lambda images: tf.nn.softmax(model(images, training=False), axis=-1),
        input_signature=signature,
    )
    tmp = _temporary_sibling(path, directory=True)
    try:
        archive.write_out(str(tmp), verbose=False)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path
