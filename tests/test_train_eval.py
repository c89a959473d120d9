"""--eval_every: SWD/KID during training, logged and used to keep the best checkpoint."""

import json
import math

import tensorflow as tf

from melano_tf import config as cfg
from melano_tf.evaluation import online
from melano_tf.train import loop


def _event_tags(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(logdir)
    acc.Reload()
    return acc


def test_eval_every_logs_scores_and_keeps_best_checkpoint(tmp_path, monkeypatch):
    # The evaluator's real scores are kept; its KID is replaced by a script whose best (lowest) value
    # comes at step 4 and is only tied at step 6: the first step reaching the minimum is kept.
    script = {2: 0.30, 4: 0.10, 6: 0.10}
    real_call, computed = online.OnlineEvaluator.__call__, []

    def scripted(self, samples):
        scores = real_call(self, samples)
        computed.append(dict(scores))
        return {**scores, "eval/kid": script[(len(computed)) * 2]}

    monkeypatch.setattr(online.OnlineEvaluator, "__call__", scripted)
    conf = cfg.TrainConfig(
        data=cfg.DataConfig(resolution=32, num_phantoms=40), model_dir=str(tmp_path / "run"), scheme="dcgan",
        base_filters=16, min_filters=8, batch_size=4, train_steps=6, precision="float32", augment="none",
        checkpoint_every=3, eval_every=2, eval_samples=8, sample_every=1000, log_every=1, summary_every=2)
    conf.validate()
    loop.train(conf)
    with open(tmp_path / "run" / "eval.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == [2, 4, 6] and len(computed) == 3
    for r, scores in zip(rows, computed):
        assert math.isfinite(scores["eval/kid"]) and math.isfinite(scores["eval/swd"]) and scores["eval/swd"] > 0
        assert r["eval/kid"] == script[r["step"]] and r["eval/swd"] == scores["eval/swd"]
    best = json.load(open(tmp_path / "run" / "best.json"))
    assert (best["step"], best["metric"], best["value"]) == (4, "eval/kid", 0.10)
    latest = tf.train.latest_checkpoint(str(tmp_path / "run" / "best_checkpoint"))
    assert latest and latest.endswith("best-4")
    # the best checkpoint restores the step it was taken at
    reader = tf.train.load_checkpoint(latest)
    steps = [k for k in reader.get_variable_to_shape_map() if k.startswith("step/")]
    assert int(reader.get_tensor(steps[0])) == 4
    acc = _event_tags(str(tmp_path / "run" / "logs"))
    kid = acc.Tensors("eval/kid")
    assert [e.step for e in kid] == [2, 4, 6]
    assert [float(tf.make_ndarray(e.tensor_proto)) for e in kid] == [
        float(tf.constant(script[s], tf.float32).numpy()) for s in (2, 4, 6)]
