"""One place that picks the Keras the whole project uses: Keras 2 (``tf_keras``).

TensorFlow Transform 1.16, TFMA 0.47 and TF Serving's loaders work with Keras 2
SavedModels, while TF 2.16's ``tf.keras`` is Keras 3. Setting
``TF_USE_LEGACY_KERAS=1`` before TensorFlow is first imported makes ``tf.keras``
and ``tf_keras`` the same library, so every component sees one Keras. The package's
``__init__`` (which runs before this module) sets it.
"""

import tensorflow as tf
import tf_keras as keras

#: Package name under which every custom object of the project is registered.
SERIALIZATION_PACKAGE = "spanet"


def register(cls):
    """Register a layer, loss or schedule so `.keras` files and SavedModels reload it by name."""
    return keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)(cls)


__all__ = ["tf", "keras", "register", "SERIALIZATION_PACKAGE"]
