"""Serving a keras-hpnet SavedModel (docs/serving.md).

- :mod:`export.serving.signatures`: the signature, input and output names
  and the request bounds shared by exporter, server and clients;
- :mod:`export.serving.images`: encoded image bytes -> model pixels, with
  the pixel limit checked from the header before decoding;
- :mod:`export.serving.store`: versions loaded with TF-Serving's TF1
  session loader, polled, leased to requests;
- :mod:`export.serving.core`: request validation and execution;
- :mod:`export.serving.grpc_service`, :mod:`export.serving.rest`: the
  PredictionService / ModelService and REST front ends;
- :mod:`export.serving.server`: the development server (``python -m export.serve``);
- :mod:`export.serving.client`: gRPC and REST clients (``python -m export.client``).
"""
