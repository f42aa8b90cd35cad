"""The process settings every pipeline script needs before TensorFlow is imported; import it first.

Keras 2 for the whole TFX 1.16 stack (``spanet._keras``), TensorFlow's C++ start-up chatter off
(errors still raise), and the google-cloud libraries' Python 3.10 FutureWarnings silenced, in this
process and (through the environment) in every Beam worker it starts.
"""

import os
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
warnings.filterwarnings("ignore", category=FutureWarning)
