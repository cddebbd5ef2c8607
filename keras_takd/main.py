r"""`python -m keras_takd.main`: train defensive-distillation chains (see `keras_takd.takd.train`).

The training command of the package's design, kept at the top level:

  python -m keras_takd.main --stages=3 --temperature=40
"""

from absl import flags

from keras_takd.takd import train
from keras_takd.takd.train import run

flags.adopt_module_key_flags(train)  # --helpshort lists the training flags

if __name__ == "__main__":
    run()
