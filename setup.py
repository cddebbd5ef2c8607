"""Packaging for keras_takd: defensive distillation through teacher-assistant chains."""

import pathlib

from setuptools import find_packages, setup

_HERE = pathlib.Path(__file__).parent

setup(
    name="keras_takd",
    version="0.1.0",
    description=(
        "Defensive distillation through teacher -> assistant -> student chains, "
        "with faithful, batched Carlini-Wagner attacks (TensorFlow / Keras 3)."
    ),
    long_description=(_HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_takd", "keras_takd.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.12",
        "tensorflow-datasets",
        "importlib_resources",  # tensorflow-datasets needs it to download, but does not require it
        "absl-py",
        "pandas",
        "matplotlib",
        "scipy",
    ],
    extras_require={
        # evaluate --executor=ray; not in a plain install: a serial run needs no Ray (240 MB).
        "ray": ["ray==2.60.*"],
        # ray too, so CI runs the Ray executor's tests (tests/takd/evaluation/test_ray_executor.py);
        # pytest-xdist runs the suite in two processes (README).
        "test": ["pytest>=7", "pytest-xdist>=3", "ruff", "ray==2.60.*"],
        "benchmarks": ["adversarial-robustness-toolbox==1.20.*"],
    },
    entry_points={
        "console_scripts": [
            "keras-takd-train=keras_takd.takd.train:run",
            "keras-takd-evaluate=keras_takd.takd.evaluate:run",
            "keras-takd-merge=keras_takd.takd.merge:run",
            "keras-takd-figures=keras_takd.takd.figures:run",
            "keras-takd-claims=keras_takd.takd.claims:run",
            "keras-takd-summary=keras_takd.takd.summary:run",
            "keras-takd-smoothed=keras_takd.smoothed.run:run",
            "keras-takd-study=keras_takd.takd.study.__main__:run",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
