"""``serving_client``: build (and send) REST or gRPC predict requests for TF Serving.

Classifier: ``--images=a.jpg,b.png``; generator: ``--model_name=lesion_generator --sample_count=4``.
``--dry_run`` prints the request instead of sending it. TensorFlow is imported only for gRPC.
"""

from __future__ import annotations

import json
import os

from absl import flags

from melano_tf import cli
from melano_tf import flags as mflags

FLAGS = flags.FLAGS


def _read_images(paths) -> list[bytes]:
    from melano_tf.errors import UserError
    out = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                out.append(f.read())
        except OSError as e:
            raise UserError(f"--images: {p}: {e.strerror or e}") from None
    return out


def _print_predictions(paths, rows) -> None:
    for p, row in zip(paths, rows):
        probs = ", ".join(f"{x:.3f}" for x in row["probabilities"])
        print(f"{p}: {row['classes']}  [{probs}]")


def _save_images(images_uint8, out_dir) -> None:
    import numpy as np

    from melano_tf import viz
    arr = np.asarray(images_uint8, np.uint8)
    for i, img in enumerate(arr):
        viz.save_png(os.path.join(out_dir, f"sample_{i:04d}.png"), img)
    print(f"{len(arr)} images -> {out_dir}")


def main() -> None:
    from melano_tf.errors import UserError
    from melano_tf.serving import client
    generator = FLAGS.sample_count > 0
    if generator and FLAGS.images:
        raise UserError("give either --images (classifier) or --sample_count (generator), not both")
    if not generator and not FLAGS.images:
        raise UserError("nothing to ask: give --images=FILE,... or --sample_count=N")
    signature = FLAGS.signature_name or ("sample" if generator else "serving_default")
    images = [] if generator else _read_images(FLAGS.images)

    if FLAGS.protocol == "rest":
        url = client.rest_url(FLAGS.server, FLAGS.model_name, FLAGS.model_version)
        body = (client.rest_sample_request(FLAGS.sample_seed, FLAGS.sample_count, signature) if generator
                else client.rest_image_request(images, signature))
        if FLAGS.dry_run:
            print(f"POST {url}")
            print(client.describe_rest_body(body))
            return
        resp = client.send_rest(url, body, FLAGS.timeout)
        if FLAGS.output_dir:
            os.makedirs(FLAGS.output_dir, exist_ok=True)
            with open(os.path.join(FLAGS.output_dir, "response.json"), "w", encoding="utf-8") as f:
                json.dump(resp, f)
        if generator:
            outputs = resp.get("outputs", {})
            if FLAGS.output_dir and "images_uint8" in outputs:
                _save_images(outputs["images_uint8"], FLAGS.output_dir)
            else:
                print(f"outputs: {', '.join(outputs)} (give --output_dir to write PNGs)")
        else:
            _print_predictions(FLAGS.images, resp.get("predictions", []))
        return

    if generator:
        req = client.grpc_sample_request(FLAGS.model_name, FLAGS.sample_seed, FLAGS.sample_count, signature,
                                         FLAGS.model_version)
    else:
        req = client.grpc_image_request(FLAGS.model_name, images, signature, FLAGS.model_version)
    if FLAGS.dry_run:
        print(f"gRPC {FLAGS.grpc_server} PredictionService.Predict")
        text = str(req)
        print(text if len(text) < 4000 else text[:4000] + f"\n... ({len(text)} characters)")
        return
    out = client.send_grpc(FLAGS.grpc_server, req, FLAGS.timeout)
    if generator:
        if FLAGS.output_dir:
            _save_images(out["images_uint8"], FLAGS.output_dir)
        else:
            print(f"outputs: {', '.join(out)} (give --output_dir to write PNGs)")
    else:
        rows = [{"probabilities": p, "classes": c.decode("utf-8")}
                for p, c in zip(out["probabilities"], out["classes"])]
        _print_predictions(FLAGS.images, rows)


def run() -> None:
    cli.run(main, mflags.define_serving_client_flags)
