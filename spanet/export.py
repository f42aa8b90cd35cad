"""Signature-only SavedModel export: fast, loadable by TF Serving, TFMA and `tf.saved_model.load`;
and the frozen inference pass (:class:`FrozenInference`) that exported signatures should run.

Saving a Keras model object makes TensorFlow trace and serialise every layer's call
(about a minute for SP&A-Net on 2 cores). Serving only needs the signatures and the
variables they capture, so the model is exported inside a plain ``tf.Module``: the
same graph in a few seconds. The directory appears atomically: it is written beside
its final path and renamed, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

from spanet._keras import keras, tf


def frozen_function(concrete: Any) -> Any:
    """``concrete`` (a concrete function of one input, without control flow) with every variable it reads
    as a constant.

    TensorFlow's ``convert_variables_to_constants_v2`` builds the same graph, then copies it op by op
    in Python into a pruned function (2.7 of the 5.4 s it took to freeze a small SP&A-Net, two
    halves); importing the frozen graph into a new function is one C++ call.
    """
    from tensorflow.python.framework import convert_to_constants as convert

    data = convert._FunctionConverterDataInEager(func=concrete, lower_control_flow=True, aggressive_inlining=False)
    graph_def, _ = convert._replace_variables_by_constants(converter_data=data)
    (images,) = [t for t in concrete.inputs if t.dtype != tf.resource]
    outputs = [t.name for t in concrete.outputs]

    def imported(inputs: tf.Tensor) -> Any:
        return tf.graph_util.import_graph_def(
            graph_def, input_map={images.name: inputs}, return_elements=outputs, name="frozen"
        )

    spec = tf.TensorSpec(images.shape, images.dtype, name=images.op.name)
    return tf.function(imported, autograph=False).get_concrete_function(spec)


class FrozenInference:
    """A Keras model's inference pass with its weights as constants: what a server should run.

    Built once from the model's current weights: TensorFlow's graph optimiser then folds the
    BatchNorm arithmetic (``spanet.layers.folding`` recomputes it from the live variables on every
    call) into the kernels and fuses each product with its bias and ReLU. Each batch runs as two halves
    side by side (``spanet.halves``), which keeps both cores of a small CPU busy. Call it like the
    model (``frozen(images, training=False)``); it is a snapshot, so weights changed later are not seen.

    Args:
      model: the Keras model; its first input is the image batch.
      batches_per_call: with more than 1, the input is a stack of that many batches
        (``(N, B, H, W, C)``) run one after another inside one call (one dispatch for N batches).
      halves: run each batch as two halves side by side (the same outputs); False runs one graph.
    """

    def __init__(self, model: keras.Model, batches_per_call: int = 1, halves: bool = True):
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        from spanet.halves import call_in_halves

        shape = [None, *model.inputs[0].shape[1:]]
        dtype = model.inputs[0].dtype

        def infer(images: tf.Tensor) -> Any:
            if halves:
                return call_in_halves(lambda half: model(half, training=False), images)
            return model(images, training=False)

        if batches_per_call == 1:
            function = tf.function(infer, autograph=False)
            spec = tf.TensorSpec(shape, dtype, name="images")
        else:
            function = tf.function(
                lambda stacked: tf.map_fn(
                    infer,
                    stacked,
                    parallel_iterations=1,
                    fn_output_signature=model.outputs[0].dtype,
                ),
                autograph=False,
            )
            spec = tf.TensorSpec([None, *shape], dtype, name="stacked_images")
        # A loop over batches (map_fn) does not import into a new function: TensorFlow's own converter.
        freeze = frozen_function if batches_per_call == 1 else convert_variables_to_constants_v2
        self.function = freeze(function.get_concrete_function(spec))
        self._single_output = len(model.outputs) == 1

    def __call__(self, images: tf.Tensor, training: bool = False) -> Any:
        if training:
            raise ValueError("FrozenInference runs inference only; call the Keras model to train")
        outputs = self.function(images)  # a list, whatever the model's output structure
        return outputs[0] if self._single_output else outputs


@contextlib.contextmanager
def signatures_only(objects: Iterable[Any]) -> Iterator[None]:
    """While saving: the Keras layers among ``objects`` (a TFT layer) keep their variables, resources and
    assets but are not traced for Keras' own loader, which the signatures do not use (Keras would trace
    their calls again, with AutoGraph: 4-5 s of a small SP&A-Net's export)."""
    layers = [value for value in objects if isinstance(value, keras.layers.Layer)]
    before = [layer._must_restore_from_config for layer in layers]
    try:
        for layer in layers:
            layer._must_restore_from_config = True  # Keras then saves no functions for the layer
        yield
    finally:
        for layer, value in zip(layers, before):
            layer._must_restore_from_config = value


def export_saved_model(
    path: str,
    signatures: Mapping[str, Any],
    models: Sequence[keras.Model] = (),
    extra_files: Optional[Mapping[str, bytes]] = None,
    **trackables: Any,
) -> str:
    """Writes a SavedModel with ``signatures`` to ``path`` (which must not exist yet).

    Args:
      path: the SavedModel directory to create.
      signatures: name -> ``tf.function`` with an input signature (or concrete function).
      models: Keras models whose variables the signatures use; only their variables are
        tracked, not their Python layers.
      extra_files: relative path -> bytes written into the directory before it appears
        (e.g. ``assets.extra/tf_serving_warmup_requests``).
      **trackables: other objects to keep in the SavedModel (e.g. a TFT layer with assets).

    Returns:
      ``path``.
    """
    if tf.io.gfile.exists(path):
        raise FileExistsError(f"SavedModel path already exists: {path}")
    module = tf.Module()
    module.model_variables = [variable for model in models for variable in model.variables]
    for name, value in trackables.items():
        setattr(module, name, value)
    for name, function in signatures.items():
        setattr(module, f"signature_{name}", function)

    def write(directory: str) -> None:
        with signatures_only(trackables.values()):
            tf.saved_model.save(module, directory, signatures=dict(signatures))
        for relative, content in (extra_files or {}).items():
            target = os.path.join(directory, relative)
            tf.io.gfile.makedirs(os.path.dirname(target))
            with tf.io.gfile.GFile(target, "wb") as handle:
                handle.write(content)

    if "://" in path:  # object stores have no atomic rename: write in place
        write(path)
        return path
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        write(staging)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
