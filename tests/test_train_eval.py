"""--eval_every: SWD/KID during training, logged and used to keep the best checkpoint."""

import json

import tensorflow as tf

from melano_tf import config as cfg
from melano_tf.train import loop


def _event_tags(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(logdir)
    acc.Reload()
    return acc


def test_eval_every_logs_scores_and_keeps_best_checkpoint(tmp_path):
    conf = cfg.TrainConfig(
        data=cfg.DataConfig(resolution=32, num_phantoms=40), model_dir=str(tmp_path / "run"), scheme="dcgan",
        base_filters=16, min_filters=8, batch_size=4, train_steps=6, precision="float32", augment="none",
        checkpoint_every=3, eval_every=2, eval_samples=8, sample_every=1000, log_every=1, summary_every=2)
    conf.validate()
    loop.train(conf)
    with open(tmp_path / "run" / "eval.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == [2, 4, 6]
    for r in rows:
        assert r["eval/kid"] == r["eval/kid"] and r["eval/swd"] > 0  # finite, positive
    best = json.load(open(tmp_path / "run" / "best.json"))
    expected = min(rows, key=lambda r: r["eval/kid"])
    assert best["step"] == expected["step"] and best["metric"] == "eval/kid"
    latest = tf.train.latest_checkpoint(str(tmp_path / "run" / "best_checkpoint"))
    assert latest and latest.endswith(f"best-{expected['step']}")
    # the best checkpoint restores the step it was taken at
    reader = tf.train.load_checkpoint(latest)
    steps = [k for k in reader.get_variable_to_shape_map() if k.startswith("step/")]
    assert int(reader.get_tensor(steps[0])) == expected["step"]
    acc = _event_tags(str(tmp_path / "run" / "logs"))
    kid = acc.Tensors("eval/kid")
    assert [e.step for e in kid] == [2, 4, 6]
    assert abs(float(tf.make_ndarray(kid[0].tensor_proto)) - rows[0]["eval/kid"]) < 1e-6
