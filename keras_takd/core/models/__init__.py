"""The classifiers, as Keras functional models that return logits.

`carlini_cnn` / `build_model`: the MNIST and CIFAR-10 networks of Papernot et al. 2016
(arXiv:1511.04508) and Carlini & Wagner 2017 (arXiv:1608.04644); `wide_resnet`: WRN-d-k
(arXiv:1605.07146), the backbone of Katz & Reches' smoothed teachers.
"""

from keras_takd.core.models.carlini import MNIST_PARAMS, build_model, carlini_cnn, with_temperature
from keras_takd.core.models.wide_resnet import blocks_per_group, wide_resnet

__all__ = [
    "MNIST_PARAMS",
    "blocks_per_group",
    "build_model",
    "carlini_cnn",
    "wide_resnet",
    "with_temperature",
]
