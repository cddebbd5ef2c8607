"""keras_takd: defensive distillation through teacher-assistant chains, with C&W attacks.

Implements Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant", on top of
Papernot et al. 2016 (arXiv:1511.04508) and Carlini & Wagner 2017 (arXiv:1608.04644).
"""

__version__ = "0.1.0"
