"""Serving the exported model over TF Serving's gRPC API: a client, a local stand-in server, a predict table.

Production serves the Pusher's base directory with TF Serving (``tensorflow/serving`` image, gRPC
on 8500, REST on 8501). This package holds the one client used against it, and a small local
server that speaks the same protocol (the same generated servicers of ``tensorflow-serving-api``)
for development and tests, where ``tensorflow_model_server`` cannot be installed.

Modules: ``config`` (every setting, as dataclasses), ``errors`` (status-coded errors),
``tensors`` (TensorProto <-> arrays, signature checks), ``model_manager`` (versions in a base
directory, load-then-swap), ``inference`` (one Predict against one loaded version), ``server`` /
``rest`` (the gRPC and HTTP front ends), ``client`` (the TF Serving client), ``predict`` (files ->
inputs -> table). No TFX import here: serving needs TensorFlow and the serving protos only.
"""
