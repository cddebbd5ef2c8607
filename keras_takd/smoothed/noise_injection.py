"""Learned weight-noise injection (PNI / CNI) for Keras convolutions and dense layers.

Nemcovsky et al. 2020, "Smoothed Inference for Adversarially-Trained Models"
(arXiv:1911.07198), and Zheltonozhskii et al. 2020, "Colored Noise Injection for Training
Adversarially Robust Neural Networks" (arXiv:2003.02188), add Gaussian noise drawn from a
learned distribution to the weights W of every layer at EVERY forward pass, in training and at
inference, and train the network and the noise parameters together with PGD adversarial
training. The noise is relative to the spread of the layer's weights, std(W):

* "white" (PNI-W of Rakin et al. 2019, arXiv:1811.09310): W + std(W) * |a| * z with a learned
  scale a per weight (initial 0.25) and z ~ N(0, I) of the kernel's shape;
* "colored" (CNI-W): W + std(W) * (|d| * z + reshape(F u)), a Gaussian with the low-rank plus
  diagonal covariance std(W)^2 (diag(d^2) + F F^T), learned diagonal d per weight and factor
  F of rank r (5 in the reference code), u ~ N(0, I_r). With `correlation="layer"` (the reference
  implementation) F spans all weights of the layer: [kernel size, r]. With
  `correlation="filter"` F is [fan_in, r], shared by the output filters of the layer, each of
  which draws its own u: weights inside a filter are correlated, filters are independent, and
  the factor costs fan_in * r parameters instead of r copies of the kernel.

Unlike the reference code (github.com/yanemcovsky/SIAM, `layers.py`), whose colored noise has
standard deviation sqrt(|std(W) d|) on the diagonal and an absolute factor F, both parts are
scaled here by std(W) (held constant in the gradient), so white and colored noise share units
and initial diagonal scale (0.25).

One noise sample is drawn per forward pass and shared by the whole batch, as in the reference
implementation, so averaging M passes (keras_takd.smoothed.smoothing) averages M sampled networks.
Setting `deterministic=True` (per layer, or `set_deterministic(model)` for a whole model)
turns the noise off exactly, also inside already compiled functions, for evaluation of the
mean network.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import keras
from keras import ops

NOISE_TYPES = ("white", "colored")
CORRELATIONS = ("layer", "filter")
DEFAULT_RANK = 5
DEFAULT_INITIAL_SCALE = 0.25
DEFAULT_INITIAL_FACTOR = 0.01


def _check_noise_arguments(
    noise: str, rank: int, correlation: str, initial_scale: float, initial_factor: float
) -> None:
    if noise not in NOISE_TYPES:
        raise ValueError(f"noise must be one of {NOISE_TYPES}, got {noise!r}")
    if correlation not in CORRELATIONS:
        raise ValueError(f"correlation must be one of {CORRELATIONS}, got {correlation!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    if not float(initial_scale) >= 0:
        raise ValueError(f"initial_scale must be a number >= 0, got {initial_scale!r}")
    if not float(initial_factor) >= 0:
        raise ValueError(f"initial_factor must be a number >= 0, got {initial_factor!r}")


class _NoisyKernelLayer(keras.layers.Layer):
    """Base of the noisy layers: owns the noise parameters and draws the kernel noise.

    Subclasses create `self.kernel` in `build` and then call `self._build_noise()`.
    """

    def __init__(
        self,
        noise: str = "colored",
        rank: int = DEFAULT_RANK,
        correlation: str = "layer",
        initial_scale: float = DEFAULT_INITIAL_SCALE,
        initial_factor: float = DEFAULT_INITIAL_FACTOR,
        deterministic: bool = False,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_noise_arguments(noise, rank, correlation, initial_scale, initial_factor)
        self.noise = noise
        self.rank = rank
        self.correlation = correlation
        self.initial_scale = float(initial_scale)
        self.initial_factor = float(initial_factor)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._deterministic = bool(deterministic)

    def _build_noise(self) -> None:
        shape = tuple(self.kernel.shape)
        self.noise_scale = self.add_weight(
            name="noise_scale",
            shape=shape,
            initializer=keras.initializers.Constant(self.initial_scale),
        )
        if self.noise == "colored":
            rows = _num_elements(shape) if self.correlation == "layer" else _fan_in(shape)
            self.noise_factor = self.add_weight(
                name="noise_factor",
                shape=(rows, self.rank),
                initializer=keras.initializers.Constant(self.initial_factor),
            )
        # 1 adds the noise, 0 removes it; a variable, so compiled functions see changes.
        self.noise_gate = self.add_weight(
            name="noise_gate",
            shape=(),
            initializer=keras.initializers.Constant(0.0 if self._deterministic else 1.0),
            trainable=False,
        )

    @property
    def deterministic(self) -> bool:
        """Whether the noise is off (the layer then computes with its mean weights W)."""
        if self.built:
            return bool(float(ops.convert_to_numpy(self.noise_gate)) == 0.0)
        return self._deterministic

    @deterministic.setter
    def deterministic(self, value: bool) -> None:
        self._deterministic = bool(value)
        if self.built:
            self.noise_gate.assign(0.0 if self._deterministic else 1.0)

    def sample_kernel_noise(self):
        """Draws one sample of the additive kernel noise (ignoring the deterministic gate).

        Returns:
            A tensor of the kernel's shape: std(W) * |a| * z ("white") or
            std(W) * (|d| * z + reshape(F u)) ("colored"). std(W) is treated as a constant in
            the gradient, so gradients reach the kernel through W and the noise parameters
            through a, d and F.
        """
        shape = tuple(self.kernel.shape)
        eps = ops.abs(self.noise_scale) * keras.random.normal(shape, seed=self.seed_generator)
        if self.noise == "colored":
            columns = 1 if self.correlation == "layer" else shape[-1]
            u = keras.random.normal((self.rank, columns), seed=self.seed_generator)
            eps = eps + ops.reshape(ops.matmul(self.noise_factor, u), shape)
        return ops.stop_gradient(ops.std(self.kernel)) * eps

    def noisy_kernel(self):
        """The kernel used by this forward pass: W plus fresh noise unless deterministic."""
        return self.kernel + self.noise_gate * self.sample_kernel_noise()

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "noise": self.noise,
            "rank": self.rank,
            "correlation": self.correlation,
            "initial_scale": self.initial_scale,
            "initial_factor": self.initial_factor,
            "deterministic": self.deterministic,
            "seed": self.seed,
        }


def _num_elements(shape: Sequence[int]) -> int:
    total = 1
    for size in shape:
        total *= int(size)
    return total


def _fan_in(shape: Sequence[int]) -> int:
    return _num_elements(shape[:-1])


def _as_pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive integer or a pair of them, got {value!r}")
    return pair


@keras.saving.register_keras_serializable(package="keras_takd")
class NoisyConv2D(_NoisyKernelLayer):
    """2-D convolution (channels last) whose kernel gets learned noise at every call.

    Args:
        filters: number of output channels.
        kernel_size: an integer or a pair (height, width).
        strides: an integer or a pair.
        padding: "valid" or "same".
        dilation_rate: an integer or a pair.
        activation: activation applied to the output (name or callable), None for linear.
        use_bias: whether to add a (noise-free) bias.
        kernel_initializer: initializer of the mean kernel W.
        bias_initializer: initializer of the bias.
        noise: "white" (per-weight learned scale) or "colored" (low-rank + diagonal).
        rank: rank r of the colored-noise factor (ignored for white noise).
        correlation: "layer" (one factor over the whole kernel) or "filter" (a factor shared
            by the filters, independent draws per filter); colored noise only.
        initial_scale: initial per-weight noise scale a (or d), relative to std(W).
        initial_factor: initial value of every entry of the factor F, relative to std(W).
        deterministic: start with the noise turned off.
        seed: seed of the layer's noise stream, None for a random one.
        **kwargs: standard `keras.layers.Layer` arguments (name, dtype, ...).

    Raises:
        ValueError: for an unknown noise type, correlation or padding, a non-positive rank,
            filters, kernel size, stride or dilation, or a negative initial value.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: str = "valid",
        dilation_rate: int | Sequence[int] = 1,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"filters must be a positive integer, got {filters!r}")
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.filters = filters
        self.kernel_size = _as_pair(kernel_size, "kernel_size")
        self.strides = _as_pair(strides, "strides")
        self.dilation_rate = _as_pair(dilation_rate, "dilation_rate")
        self.padding = padding
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape) -> None:
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"the channel dimension of the input must be known: {input_shape}")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, int(channels), self.filters),
            initializer=self.kernel_initializer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.filters,), initializer=self.bias_initializer
            )
        self._build_noise()

    def call(self, inputs, training=None):
        outputs = ops.conv(
            inputs,
            self.noisy_kernel(),
            strides=self.strides,
            padding=self.padding,
            data_format="channels_last",
            dilation_rate=self.dilation_rate,
        )
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@keras.saving.register_keras_serializable(package="keras_takd")
class NoisyDense(_NoisyKernelLayer):
    """Dense layer whose kernel gets learned noise at every call.

    Args:
        units: number of outputs.
        activation: activation applied to the output (name or callable), None for linear.
        use_bias: whether to add a (noise-free) bias.
        kernel_initializer: initializer of the mean kernel W.
        bias_initializer: initializer of the bias.
        **kwargs: the noise arguments of `NoisyConv2D` (noise, rank, correlation,
            initial_scale, initial_factor, deterministic, seed) and standard layer arguments.

    Raises:
        ValueError: for a non-positive number of units or a bad noise argument.
    """

    def __init__(
        self,
        units: int,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive integer, got {units!r}")
        self.units = units
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape) -> None:
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"the last dimension of the input must be known: {input_shape}")
        self.kernel = self.add_weight(
            name="kernel", shape=(int(features), self.units), initializer=self.kernel_initializer
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.units,), initializer=self.bias_initializer
            )
        self._build_noise()

    def call(self, inputs, training=None):
        outputs = ops.matmul(inputs, self.noisy_kernel())
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


NOISY_LAYERS = (NoisyConv2D, NoisyDense)


def noisy_layers(model: keras.Model) -> list[_NoisyKernelLayer]:
    """Returns the noisy layers of `model`, including those of nested models, in order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, NOISY_LAYERS):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(noisy_layers(layer))
    return found


def set_deterministic(model: keras.Model, deterministic: bool = True) -> int:
    """Turns the weight noise of every noisy layer of `model` off (True) or on (False).

    Returns:
        The number of noisy layers changed (0 for a model without noise injection).
    """
    layers = noisy_layers(model)
    for layer in layers:
        layer.deterministic = deterministic
    return len(layers)


@contextlib.contextmanager
def deterministic_mode(model: keras.Model) -> Iterator[keras.Model]:
    """Context manager evaluating `model` with its noise off, restoring each layer after."""
    layers = noisy_layers(model)
    before = [layer.deterministic for layer in layers]
    try:
        for layer in layers:
            layer.deterministic = True
        yield model
    finally:
        for layer, state in zip(layers, before, strict=True):
            layer.deterministic = state


_UNSUPPORTED = ("kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint")


def _noisy_replacement(layer, noise_kwargs: dict) -> _NoisyKernelLayer | None:
    """A noisy layer with the configuration of a plain Conv2D / Dense, else None."""
    if type(layer) not in (keras.layers.Conv2D, keras.layers.Dense):
        return None
    config = layer.get_config()
    for key in _UNSUPPORTED:
        if config.get(key) is not None:
            raise ValueError(f"layer {layer.name!r} has a {key}, which noisy layers do not support")
    if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
        raise ValueError(f"layer {layer.name!r} is LoRA-enabled or quantized: not supported")
    common = {
        "name": layer.name,
        "activation": config["activation"],
        "use_bias": config["use_bias"],
        "kernel_initializer": config["kernel_initializer"],
        "bias_initializer": config["bias_initializer"],
        "dtype": config.get("dtype"),
        **noise_kwargs,
    }
    if isinstance(layer, keras.layers.Dense):
        return NoisyDense(units=config["units"], **common)
    if config["data_format"] != "channels_last" or config["groups"] != 1:
        raise ValueError(f"Conv2D {layer.name!r} must be channels_last with groups=1")
    return NoisyConv2D(
        filters=config["filters"],
        kernel_size=tuple(config["kernel_size"]),
        strides=tuple(config["strides"]),
        padding=config["padding"],
        dilation_rate=tuple(config["dilation_rate"]),
        **common,
    )


def add_weight_noise(
    model: keras.Model,
    noise: str = "colored",
    rank: int = DEFAULT_RANK,
    correlation: str = "layer",
    initial_scale: float = DEFAULT_INITIAL_SCALE,
    initial_factor: float = DEFAULT_INITIAL_FACTOR,
    seed: int | None = None,
    copy_weights: bool = True,
    name: str | None = None,
    dense_noise: str | None = None,
) -> keras.Model:
    """Clones a functional or Sequential model with every Conv2D / Dense made noisy.

    Args:
        model: the model to convert; it is left unchanged.
        noise: "white" or "colored" (see the module docstring).
        rank: rank of the colored-noise factor.
        correlation: "layer" or "filter" correlation of the colored noise.
        initial_scale: initial per-weight noise scale, relative to std(W).
        initial_factor: initial factor entries, relative to std(W).
        seed: base seed; noisy layer i gets seed + i. None for random streams.
        copy_weights: copy the weights of `model` (kernels, biases, batch-norm statistics)
            into the clone, so a trained network can be fine-tuned with noise.
        name: the clone's name; defaults to "{model.name}_{noise}_noise".
        dense_noise: noise type of the Dense layers, None for `noise`. (The reference CNI
            code of Nemcovsky et al. puts colored noise on the convolutions and white noise
            on the final linear layer: noise="colored", dense_noise="white".)

    Returns:
        A new model computing the same function as `model` when its noise is off.

    Raises:
        ValueError: for a bad noise argument, a model with no Conv2D or Dense layer, or a
            layer configuration the noisy layers do not support.
    """
    _check_noise_arguments(noise, rank, correlation, initial_scale, initial_factor)
    dense_noise = noise if dense_noise is None else dense_noise
    _check_noise_arguments(dense_noise, rank, correlation, initial_scale, initial_factor)
    replaced = []

    def clone_layer(layer):
        seed_i = None if seed is None else seed + len(replaced)
        noise_kwargs = {
            "noise": dense_noise if isinstance(layer, keras.layers.Dense) else noise,
            "rank": rank,
            "correlation": correlation,
            "initial_scale": initial_scale,
            "initial_factor": initial_factor,
            "seed": seed_i,
        }
        new = _noisy_replacement(layer, noise_kwargs)
        if new is None:
            return layer.__class__.from_config(layer.get_config())
        replaced.append(layer.name)
        return new

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    if not replaced:
        raise ValueError(f"model {model.name!r} has no Conv2D or Dense layer to make noisy")
    if copy_weights:
        _copy_weights(model, clone, set(replaced))
    # Re-wrap to rename, keeping a single input / output unwrapped as in the source model.
    inputs = clone.inputs[0] if len(clone.inputs) == 1 else clone.inputs
    outputs = clone.outputs[0] if len(clone.outputs) == 1 else clone.outputs
    return keras.Model(inputs, outputs, name=name or f"{model.name}_{noise}_noise")


def _copy_weights(source: keras.Model, target: keras.Model, noisy_names: set[str]) -> None:
    for old in source.layers:
        if not old.weights:
            continue
        new = target.get_layer(old.name)
        if old.name in noisy_names:
            new.kernel.assign(old.kernel)
            if new.use_bias:
                new.bias.assign(old.bias)
        else:
            new.set_weights(old.get_weights())


def cni_model(
    base: str = "wide_resnet",
    noise: str = "colored",
    rank: int = DEFAULT_RANK,
    correlation: str = "layer",
    initial_scale: float = DEFAULT_INITIAL_SCALE,
    initial_factor: float = DEFAULT_INITIAL_FACTOR,
    seed: int | None = None,
    dense_noise: str | None = None,
    **base_kwargs,
) -> keras.Model:
    """Builds a noise-injection (CNI / PNI) network returning logits.

    Args:
        base: "wide_resnet" (`keras_takd.core.models.wide_resnet`) or "carlini_cnn"
            (`keras_takd.core.models.carlini_cnn`, which needs `input_shape` and `params`).
        noise: "white" or "colored".
        rank: rank of the colored-noise factor (5 in Nemcovsky et al.).
        correlation: "layer" or "filter" correlation of the colored noise.
        initial_scale: initial per-weight noise scale, relative to std(W).
        initial_factor: initial factor entries, relative to std(W).
        seed: base seed of the noise streams, None for random ones.
        dense_noise: noise type of the Dense layers, None for `noise`; "white" with
            noise="colored" reproduces the reference CNI code (white noise on the last layer).
        **base_kwargs: arguments of the base builder (depth, widen_factor, num_classes, ...).

    Returns:
        A functional model whose Conv2D and Dense layers are `NoisyConv2D` / `NoisyDense`.

    Raises:
        ValueError: for an unknown base or a bad noise or builder argument.
    """
    from keras_takd.core.models import carlini_cnn, wide_resnet

    builders = {"wide_resnet": wide_resnet, "carlini_cnn": carlini_cnn}
    if base not in builders:
        raise ValueError(f"base must be one of {sorted(builders)}, got {base!r}")
    plain = builders[base](**base_kwargs)
    return add_weight_noise(
        plain,
        noise=noise,
        rank=rank,
        correlation=correlation,
        initial_scale=initial_scale,
        initial_factor=initial_factor,
        seed=seed,
        copy_weights=False,
        name=f"{plain.name}_cni_{noise}",
        dense_noise=dense_noise,
    )
