"""Requests to a running ``tensorflow_model_server`` serving the classifier and the generator.

REST (``POST http://HOST:8501/v1/models/<name>[/versions/<v>]:predict``):

* classifier, row format, binary inputs as base64:
  ``{"signature_name": "serving_default", "instances": [{"b64": "<base64 JPEG>"}, ...]}``
  -> ``{"predictions": [{"probabilities": [...], "classes": "melanoma"}, ...]}``
* generator, columnar format (its inputs are scalars):
  ``{"signature_name": "sample", "inputs": {"seed": 7, "count": 4}}``
  -> ``{"outputs": {"images": [...], "images_uint8": [...]}}``

gRPC (``HOST:8500``): ``tensorflow_serving.apis.predict_pb2.PredictRequest`` with the same
inputs as TensorProtos, sent with ``PredictionServiceStub.Predict``; needs the
``tensorflow-serving-api`` package, which is imported only when gRPC is asked for.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

from melano_tf.errors import UserError

CLASSIFIER_INPUT = "image_bytes"
GRPC_MISSING = ("gRPC needs the tensorflow-serving-api package (pip install tensorflow-serving-api); "
                "or use --protocol=rest")


def rest_url(server: str, model_name: str, version: int = 0) -> str:
    host = server if server.startswith(("http://", "https://")) else f"http://{server}"
    path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version else "")
    return f"{host.rstrip('/')}{path}:predict"


def rest_image_request(images: list[bytes], signature_name: str = "serving_default") -> dict:
    """Row-format request of encoded images (each sent as ``{"b64": ...}``)."""
    if not images:
        raise UserError("--images: give at least one JPEG/PNG file")
    return {"signature_name": signature_name,
            "instances": [{"b64": base64.b64encode(b).decode("ascii")} for b in images]}


def rest_sample_request(seed: int, count: int, signature_name: str = "sample") -> dict:
    """Columnar request of a generator's ``sample(seed, count)`` signature."""
    if count < 1:
        raise UserError(f"--sample_count={count}: must be >= 1")
    return {"signature_name": signature_name, "inputs": {"seed": int(seed), "count": int(count)}}


def send_rest(url: str, body: dict, timeout: float = 30.0) -> dict:
    """POST ``body`` as JSON; the parsed response, or UserError with the server's one-line reason."""
    req = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise UserError(f"{url}: HTTP {e.code}: {str(detail).splitlines()[0][:300]}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"{url}: cannot reach the server ({reason}); is tensorflow_model_server running?") from None


def grpc_modules():
    """(predict_pb2, prediction_service_pb2_grpc, grpc), or UserError(GRPC_MISSING)."""
    try:
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError:
        raise UserError(GRPC_MISSING) from None
    return predict_pb2, prediction_service_pb2_grpc, grpc


def grpc_request(model_name: str, signature_name: str, inputs: dict, version: int = 0):
    """A ``PredictRequest``; ``inputs``: name -> numpy-convertible value (bytes lists become DT_STRING)."""
    predict_pb2, _, _ = grpc_modules()
    import tensorflow as tf
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model_name
    req.model_spec.signature_name = signature_name
    if version:
        req.model_spec.version.value = int(version)
    for name, value in inputs.items():
        req.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return req


def grpc_image_request(model_name: str, images: list[bytes], signature_name: str = "serving_default",
                       version: int = 0):
    if not images:
        raise UserError("--images: give at least one JPEG/PNG file")
    import numpy as np
    return grpc_request(model_name, signature_name, {CLASSIFIER_INPUT: np.array(images, dtype=object)}, version)


def grpc_sample_request(model_name: str, seed: int, count: int, signature_name: str = "sample", version: int = 0):
    import numpy as np
    return grpc_request(model_name, signature_name, {"seed": np.int64(seed), "count": np.int32(count)}, version)


def send_grpc(server: str, request, timeout: float = 30.0) -> dict:
    """Send a PredictRequest; returns {output name: numpy array}."""
    _, service, grpc = grpc_modules()
    import tensorflow as tf
    with grpc.insecure_channel(server) as channel:
        stub = service.PredictionServiceStub(channel)
        try:
            resp = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            raise UserError(f"{server}: gRPC {e.code().name}: {str(e.details()).splitlines()[0][:300]}") from None
    return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}


def describe_rest_body(body: dict, max_b64: int = 48) -> str:
    """The JSON body with long base64 strings shortened (for --dry_run on a terminal)."""
    def short(x):
        if isinstance(x, dict):
            return {k: (f"{v[:max_b64]}...({len(v)} chars)" if k == "b64" and len(v) > max_b64 else short(v))
                    for k, v in x.items()}
        if isinstance(x, list):
            return [short(v) for v in x]
        return x
    return json.dumps(short(body), indent=1)
