"""SavedModel export of a trained classifier, for TF Serving and for any TensorFlow program.

Endpoints (``keras.export.ExportArchive``):

* ``serving_default(image_bytes: string [N])``: each element an encoded JPEG / PNG (GIF/BMP
  first frame too). Inside the graph: decode to RGB uint8, centre-crop to a square of side
  min(H, W), resize to R x R (bilinear with antialiasing), round to uint8 as the training cache
  did, scale ``x / 127.5 - 1``. Bytes that do not decode raise InvalidArgumentError.
* ``classify_images(images: float32 [N, R, R, 3] in [-1, 1])``: already preprocessed images.

Both return ``probabilities`` float32 [N, K] and ``classes`` string [N] (the argmax class
name). ``assets.extra/classifier.json`` holds class names and resolution for people and clients
(TF Serving ignores it). The archive is written into a temporary sibling and renamed into place.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from melano_tf import fileio

INFO_FILE = os.path.join("assets.extra", "classifier.json")


def decode_and_resize(data: tf.Tensor, resolution: int) -> tf.Tensor:
    """One encoded image (string scalar) -> float32 (R, R, 3) in [-1, 1]."""
    img = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    shape = tf.shape(img)
    h, w = shape[0], shape[1]
    s = tf.minimum(h, w)
    img = tf.image.crop_to_bounding_box(img, (h - s) // 2, (w - s) // 2, s, s)
    img = tf.image.resize(tf.cast(img, tf.float32), [resolution, resolution], method="bilinear",
                          antialias=True)
    img = tf.clip_by_value(tf.round(img), 0.0, 255.0)
    return tf.ensure_shape(img / 127.5 - 1.0, [resolution, resolution, 3])


def write_classifier(model: keras.Model, path: str, class_names, resolution: int,
                     extra_info: dict | None = None) -> str:
    """Write the SavedModel into ``path`` (which must not exist); not atomic (see ``export_classifier``)."""
    names = tf.constant(list(class_names))

    def outputs(images):
        probs = tf.cast(model(images, training=False), tf.float32)
        return {"probabilities": probs, "classes": tf.gather(names, tf.argmax(probs, axis=-1))}

    def from_bytes(image_bytes):
        images = tf.map_fn(lambda b: decode_and_resize(b, resolution), image_bytes,
                           fn_output_signature=tf.TensorSpec([resolution, resolution, 3], tf.float32))
        return outputs(images)

    def from_images(images):
        return outputs(images)

    # Penultimate activations (pooled features before the logits) for FID/KID/memorization:
    # ``--features=classifier:PATH`` of bin/evaluate uses this endpoint.
    names_in = [layer.name for layer in model.layers]
    penultimate = keras.Model(model.inputs, model.get_layer("dropout" if "dropout" in names_in
                                                            else names_in[-3]).output)

    def features(images):
        y = tf.cast(penultimate(images, training=False), tf.float32)
        return {"features": tf.reshape(y, [tf.shape(y)[0], -1])}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(penultimate)
    archive.add_endpoint("features", tf.function(features),
                         input_signature=[tf.TensorSpec([None, resolution, resolution, 3], tf.float32,
                                                        name="images")])
    archive.add_endpoint("serving_default", tf.function(from_bytes),
                         input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.add_endpoint("classify_images", tf.function(from_images),
                         input_signature=[tf.TensorSpec([None, resolution, resolution, 3], tf.float32,
                                                        name="images")])
    archive.write_out(path, verbose=False)
    info = {"class_names": list(class_names), "resolution": int(resolution),
            "input": "serving_default: image_bytes string [N] (JPEG/PNG); classify_images and features: "
                     "images float32 [N, R, R, 3] in [-1, 1]",
            **(extra_info or {})}
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with open(os.path.join(path, INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    return path


def export_classifier(model: keras.Model, path: str, class_names, resolution: int,
                      extra_info: dict | None = None) -> str:
    """Write the classifier SavedModel at ``path`` atomically (replacing an older one); returns it."""
    return fileio.replace_dir(path, lambda tmp: write_classifier(model, tmp, class_names, resolution, extra_info))
