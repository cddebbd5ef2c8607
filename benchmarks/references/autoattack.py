"""Croce & Hein's own APGD and AutoAttack (github.com/fra31/auto-attack), in PyTorch.

The reference runner of `apgd_fidelity.py` (arXiv:2003.01690): the Keras network's weights
are copied into an equivalent PyTorch module (`torch_copy`) and the authors' `APGDAttack` or
`AutoAttack(version="custom", attacks_to_run=["apgd-ce", "apgd-t"])` attack it. Neither the
code nor PyTorch is a dependency; fetch and install them outside the environment:
    git clone https://github.com/fra31/auto-attack /work/tmp/autoattack
    pip install --no-deps --target /work/tmp/torch_env torch==2.13.0 filelock sympy mpmath \\
        networkx jinja2 markupsafe fsspec typing_extensions
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np


def import_autoattack(autoattack_path: str, torch_path: str):
    """The authors' `autoattack` package and torch, from folders outside the environment.

    Appended to sys.path, so that they never shadow a package the environment already has.

    Raises:
        ValueError: a folder does not hold what it should.
    """
    if not (pathlib.Path(autoattack_path) / "autoattack" / "autopgd_base.py").is_file():
        raise ValueError(
            f"--autoattack_path: {autoattack_path} has no autoattack/autopgd_base.py; expected "
            "a clone of github.com/fra31/auto-attack"
        )
    sys.path.extend([autoattack_path, torch_path])
    try:
        import autoattack
        import torch
    except ImportError as error:
        raise ValueError(
            f"--torch_path: cannot import torch from {torch_path} ({error}); expected a "
            "`pip install --target` folder of torch"
        ) from error
    return autoattack, torch


def torch_copy(model, torch):
    """A PyTorch module computing the same logits as the Keras `model`, for NHWC inputs.

    It walks the layers of a sequential functional model (`carlini_cnn`): Conv2D and Dense
    (with their ReLU), MaxPooling2D, Flatten (in Keras' height-width-channel order), Dropout
    (inactive at inference).

    Raises:
        ValueError: a layer it does not know.
    """
    import keras

    class Permute(torch.nn.Module):
        def __init__(self, *dims):
            super().__init__()
            self.dims = dims

        def forward(self, x):
            return x.permute(*self.dims)

    modules = [Permute(0, 3, 1, 2)]  # NHWC in, NCHW inside
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer | keras.layers.Dropout):
            continue
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            conv = torch.nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[:2])
            conv.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            conv.bias.data = torch.from_numpy(bias.copy())
            modules.append(conv)
        elif isinstance(layer, keras.layers.MaxPooling2D):
            modules.append(torch.nn.MaxPool2d(layer.pool_size))
        elif isinstance(layer, keras.layers.Flatten):
            modules += [Permute(0, 2, 3, 1), torch.nn.Flatten()]  # in Keras' NHWC order
        elif isinstance(layer, keras.layers.Dense):
            kernel, bias = layer.get_weights()
            dense = torch.nn.Linear(*kernel.shape)
            dense.weight.data = torch.from_numpy(kernel.T.copy())
            dense.bias.data = torch.from_numpy(bias.copy())
            modules.append(dense)
        else:
            raise ValueError(f"torch_copy: layer {layer.name} ({type(layer).__name__}) unknown")
        activation = getattr(layer, "activation", None)
        if activation is not None and activation.__name__ == "relu":
            modules.append(torch.nn.ReLU())
    return torch.nn.Sequential(*modules).eval()


def run(autoattack, torch, net, attack: str, x, y, eps: float, norm: str, steps: int):
    """The authors' attack on `net`; returns the adversarial images as numpy (NHWC)."""
    from autoattack.autopgd_base import APGDAttack

    norm_name = {"linf": "Linf", "l2": "L2"}[norm]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    if attack == "autoattack_lite":
        adversary = autoattack.AutoAttack(
            net,
            norm=norm_name,
            eps=eps,
            version="custom",
            attacks_to_run=["apgd-ce", "apgd-t"],
            seed=0,
            verbose=False,
            device="cpu",
        )
        # The standard version's settings for L-inf and L2 (AutoAttack.set_version).
        adversary.apgd.n_restarts = adversary.apgd_targeted.n_restarts = 1
        adversary.apgd_targeted.n_target_classes = 9
        adversary.apgd.n_iter = adversary.apgd_targeted.n_iter = steps
        x_adv = adversary.run_standard_evaluation(xt, yt, bs=len(x))
    else:
        loss = attack.removeprefix("apgd_")
        adversary = APGDAttack(
            net, n_iter=steps, norm=norm_name, n_restarts=1, eps=eps, seed=0, loss=loss,
            device="cpu",
        )  # fmt: skip
        x_adv = adversary.perturb(xt, yt)
    return x_adv.detach().numpy().astype(np.float32)
