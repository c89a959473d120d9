"""bin/serving_client: REST bodies (base64 instances, columnar sample), gRPC PredictRequests
(with a stand-in tensorflow_serving package), dry runs and the message without the package."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import types

import pytest

from melano_tf.errors import UserError
from melano_tf.serving import client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_rest_bodies_and_url():
    body = client.rest_image_request([b"\xff\xd8jpeg", b"\x89PNG"])
    assert body == {"signature_name": "serving_default",
                    "instances": [{"b64": base64.b64encode(b"\xff\xd8jpeg").decode()},
                                  {"b64": base64.b64encode(b"\x89PNG").decode()}]}
    json.dumps(body)
    assert client.rest_sample_request(7, 4) == {"signature_name": "sample", "inputs": {"seed": 7, "count": 4}}
    assert client.rest_url("localhost:8501", "lesion_classifier") == \
        "http://localhost:8501/v1/models/lesion_classifier:predict"
    assert client.rest_url("https://h:1/", "g", 3) == "https://h:1/v1/models/g/versions/3:predict"
    with pytest.raises(UserError):
        client.rest_image_request([])
    with pytest.raises(UserError):
        client.rest_sample_request(0, 0)


def test_send_rest_unreachable_is_one_line():
    with pytest.raises(UserError, match="cannot reach the server"):
        client.send_rest("http://127.0.0.1:9/v1/models/x:predict", {"instances": []}, timeout=2)


def test_grpc_request_with_stand_in_package(monkeypatch):
    """The PredictRequest is filled as tensorflow-serving-api expects (package faked: not installed here)."""
    from tensorflow.core.framework import tensor_pb2, types_pb2

    class Spec:
        def __init__(self):
            self.name, self.signature_name = "", ""
            self.version = types.SimpleNamespace(value=0)

    class PredictRequest:
        def __init__(self):
            self.model_spec = Spec()
            self.inputs = _ProtoMap()

    class _ProtoMap(dict):
        def __missing__(self, key):
            self[key] = tensor_pb2.TensorProto()
            return self[key]

    apis = types.ModuleType("tensorflow_serving.apis")
    apis.predict_pb2 = types.SimpleNamespace(PredictRequest=PredictRequest)
    apis.prediction_service_pb2_grpc = types.SimpleNamespace()
    pkg = types.ModuleType("tensorflow_serving")
    pkg.apis = apis
    monkeypatch.setitem(sys.modules, "tensorflow_serving", pkg)
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", apis)
    monkeypatch.setitem(sys.modules, "grpc", types.ModuleType("grpc"))

    req = client.grpc_image_request("lesion_classifier", [b"a", b"bc"], version=2)
    assert req.model_spec.name == "lesion_classifier" and req.model_spec.signature_name == "serving_default"
    assert req.model_spec.version.value == 2
    t = req.inputs["image_bytes"]
    assert t.dtype == types_pb2.DT_STRING and list(t.string_val) == [b"a", b"bc"]
    assert [d.size for d in t.tensor_shape.dim] == [2]
    req = client.grpc_sample_request("lesion_generator", 5, 3)
    assert req.model_spec.signature_name == "sample"
    assert req.inputs["seed"].dtype == types_pb2.DT_INT64 and list(req.inputs["seed"].int64_val) == [5]
    assert req.inputs["count"].dtype == types_pb2.DT_INT32 and list(req.inputs["count"].int_val) == [3]


def _client(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", "serving_client"), *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_dry_runs_and_grpc_message(tmp_path):
    img = tmp_path / "a.jpg"
    img.write_bytes(b"\xff\xd8\xff" + b"x" * 200)
    proc = _client(f"--images={img}", "--dry_run", "--server=srv:8501")
    assert proc.returncode == 0, proc.stderr
    head, body = proc.stdout.split("\n", 1)
    assert head == "POST http://srv:8501/v1/models/lesion_classifier:predict"
    inst = json.loads(body)["instances"][0]["b64"]
    assert inst.startswith(base64.b64encode(img.read_bytes()).decode()[:48]) and "chars)" in inst
    proc = _client("--model_name=lesion_generator", "--sample_count=2", "--sample_seed=9", "--dry_run")
    assert proc.returncode == 0 and json.loads(proc.stdout.split("\n", 1)[1])["inputs"] == {"seed": 9, "count": 2}
    try:
        import tensorflow_serving  # noqa: F401
        pytest.skip("tensorflow-serving-api is installed: the missing-package message cannot show")
    except ImportError:
        pass
    proc = _client(f"--images={img}", "--protocol=grpc", "--dry_run")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"serving_client: error: {client.GRPC_MISSING}"
    proc = _client("--dry_run")
    assert proc.returncode == 2 and "--images" in proc.stderr
