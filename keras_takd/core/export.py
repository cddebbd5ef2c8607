"""Saving models atomically (`.keras` files and TF SavedModels for serving), and loading them.

SavedModels get three signatures for TF Serving: `serve` and `serving_default` (float32
`images` [None, H, W, C] in [0, 1] -> logits) and `probabilities` (softmax at T = 1), each
returning its tensor under the key `output_0`. Both writers go through a temporary
name and a rename (see `keras_takd.core.files`), so a kill never leaves a half-written model.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import keras
import tensorflow as tf

from keras_takd.core.files import check_keras_file, temporary_sibling, write_atomic


def load_model(path: str | os.PathLike) -> keras.Model:
    """Loads a `.keras` file, naming it if it is missing or corrupt.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is corrupt (see `keras_takd.core.files.check_keras_file`).
    """
    return keras.saving.load_model(check_keras_file(path))


def save_model_atomic(model: keras.Model, path: str | os.PathLike) -> None:
    """Saves a `.keras` file through a temporary file and a rename."""
    write_atomic(path, model.save)


def export_saved_model(model: keras.Model, path: str | os.PathLike) -> pathlib.Path:
    """Exports a logits model as a TF SavedModel for serving, atomically.

    Endpoints: `serve(images) -> logits` and `probabilities(images) -> softmax(logits)`,
    with `images` float32 [None, H, W, C] in [0, 1]; Keras also signs the first endpoint as
    `serving_default`, so the SavedModel has three signatures, each returning `output_0`.
    An existing folder at `path` (left by an interrupted run of the same stage) is replaced
    only once the new export is complete.

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
    tmp = temporary_sibling(path, directory=True)
    try:
        archive.write_out(str(tmp), verbose=False)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path
