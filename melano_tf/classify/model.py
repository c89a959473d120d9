"""Classifier networks: ``images (B, R, R, 3) float32 in [-1, 1] -> probabilities (B, K)``.

* ``small_cnn``: ``[Conv3x3(F) -> BN -> ReLU] x2 -> MaxPool2`` per stage, ``F = width * 2**s``,
  stages until 4x4 (at most 4), then global average pooling, dropout and ``Dense(K) -> softmax``.
  73 k parameters at 32 px (3 stages) and 295 k from 64 px on (4 stages) at width 16: trains on
  2 CPU cores in minutes at 32-64 px.
* ``efficientnet_b0`` / ``resnet50``: ``keras.applications`` with ``include_top=False,
  pooling="avg"`` and ``weights=None``; ImageNet (or any) weights come only from a local file via
  ``backbone_weights`` (nothing is ever downloaded). Each backbone gets the input scaling it was
  trained with: EfficientNet takes [0, 255] (it normalises inside), ResNet50 takes caffe-style
  BGR minus the ImageNet mean.

The softmax is computed in float32 whatever the precision policy.
"""

from __future__ import annotations

import os

import keras

from melano_tf.classify.config import BACKBONES
from melano_tf.errors import UserError

#: ImageNet channel means in BGR order, subtracted by ``resnet50.preprocess_input`` ("caffe" mode).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="melano_tf")
class CaffePreprocess(keras.layers.Layer):
    """[-1, 1] RGB -> caffe input: ``bgr = 127.5 * (x + 1)[..., ::-1] - mean_bgr``."""

    def call(self, x):
        x = (x + 1.0) * 127.5
        x = keras.ops.flip(x, axis=-1)
        return x - keras.ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=x.dtype)


def small_cnn(resolution: int, num_classes: int, width: int = 16, dropout: float = 0.3,
              name: str = "small_cnn") -> keras.Model:
    """The default CPU-friendly network (see the module docstring)."""
    image = keras.Input((resolution, resolution, 3), name="image")
    h = image
    stages = 0
    r = resolution
    while r > 4 and stages < 4:
        f = width * 2 ** stages
        for j in range(2):
            h = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"s{stages}_conv{j}")(h)
            h = keras.layers.BatchNormalization(name=f"s{stages}_bn{j}")(h)
            h = keras.layers.ReLU(name=f"s{stages}_relu{j}")(h)
        h = keras.layers.MaxPooling2D(2, name=f"s{stages}_pool")(h)
        r //= 2
        stages += 1
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    h = keras.layers.Dropout(dropout, name="dropout")(h)
    logits = keras.layers.Dense(num_classes, name="logits")(h)
    probs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return keras.Model(image, probs, name=name)


def _application(backbone: str, resolution: int, num_classes: int, weights: str | None,
                 dropout: float) -> keras.Model:
    if resolution < 32:
        raise UserError(f"--resolution={resolution}: {backbone} needs at least 32 px")
    if weights and not os.path.isfile(weights):
        raise UserError(f"--backbone_weights={weights}: no such file")
    image = keras.Input((resolution, resolution, 3), name="image")
    if backbone == "efficientnet_b0":
        x = keras.layers.Rescaling(127.5, offset=127.5, name="to_0_255")(image)
        base = keras.applications.EfficientNetB0(include_top=False, weights=None, pooling="avg",
                                                 input_shape=(resolution, resolution, 3))
    else:
        x = CaffePreprocess(name="caffe_preprocess")(image)
        base = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg",
                                           input_shape=(resolution, resolution, 3))
    if weights:
        try:
            base.load_weights(weights)
        except Exception as e:  # noqa: BLE001  (h5py/keras raise many kinds)
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"--backbone_weights={weights}: cannot load into {backbone} without top "
                            f"({msg[:200]})") from None
    h = base(x)
    h = keras.layers.Dropout(dropout, name="dropout")(h)
    logits = keras.layers.Dense(num_classes, name="logits")(h)
    probs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return keras.Model(image, probs, name=backbone)


def build(backbone: str, resolution: int, num_classes: int, backbone_weights: str | None = None,
          width: int = 16, dropout: float = 0.3) -> keras.Model:
    """The classifier for ``backbone``; ``backbone_weights``: a local weights file or None."""
    if backbone not in BACKBONES:
        raise UserError(f"--backbone={backbone}: choose one of {', '.join(BACKBONES)}")
    if num_classes < 2:
        raise UserError(f"num_classes={num_classes}: need at least 2")
    if backbone == "small_cnn":
        if backbone_weights:
            raise UserError("--backbone_weights applies to efficientnet_b0 / resnet50, not small_cnn")
        return small_cnn(resolution, num_classes, width=width, dropout=dropout)
    return _application(backbone, resolution, num_classes, backbone_weights or None, dropout)
