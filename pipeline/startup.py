"""The process settings every pipeline script needs before TensorFlow is imported; import it first.

Keras 2 for the whole TFX 1.16 stack (``spanet._keras``), TensorFlow's C++ start-up chatter off
(errors still raise), the google-cloud libraries' Python 3.10 FutureWarnings silenced, and
TensorFlow's threads per op (``spanet.threads``), in this process and (through the environment) in
every Beam worker it starts.
"""

import os
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
warnings.filterwarnings("ignore", category=FutureWarning)

from spanet.threads import apply_thread_defaults  # noqa: E402  (imports no TensorFlow)

apply_thread_defaults()
