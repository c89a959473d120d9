"""Flag groups: each binary's defaults are its own, whatever else a process defined first."""

from __future__ import annotations

import json


def _defaults(fresh_python, code: str) -> dict:
    """Run ``code`` (which defines flag groups) in a fresh process; the printed JSON, or the error line."""
    proc = fresh_python("import json; from melano_tf import flags as f\n" + code)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


SHOW = "print(json.dumps({k: f.FLAGS[k].default for k in ('resolution', 'train_steps', 'imbalance', 'export')}))"


def test_each_binary_gets_its_own_defaults(fresh_python):
    from melano_tf.classify.config import ClassifierConfig
    from melano_tf.classify.experiment_config import ExperimentConfig
    c, e = ClassifierConfig(), ExperimentConfig()
    assert _defaults(fresh_python, "f.define_classifier_flags()\n" + SHOW) == {
        "resolution": c.data.resolution, "train_steps": c.train_steps, "imbalance": c.imbalance, "export": c.export}
    assert _defaults(fresh_python, "f.define_experiment_flags()\n" + SHOW) == {
        "resolution": e.resolution, "train_steps": e.classifier_steps, "imbalance": e.imbalance, "export": False}
    # the experiment after the classifier group (another order, other defaults): refused, not silently mixed
    mixed = _defaults(fresh_python, "f.define_classifier_flags()\nf.define_experiment_flags()\n" + SHOW)
    assert "define_classifier_flags was already called with defaults" in mixed["error"]


def test_a_shared_flag_with_another_default_is_refused(fresh_python):
    out = _defaults(fresh_python, "f.define_train_flags()\nf.define_classifier_flags()\nprint('{}')")
    assert "define_data_flags was already called with defaults {'resolution': 256}, now {'resolution': 64}" \
        in out["error"]
    out = _defaults(fresh_python, "f.define_train_flags()\nf.define_synthesize_flags()\nprint('{}')")
    assert "--batch_size is already defined with default 16, this group wants 32" in out["error"]
    same = _defaults(fresh_python, "f.define_classifier_flags()\nf.define_synthesize_flags()\n"
                     "print(json.dumps({k: f.FLAGS[k].default for k in ('seed', 'batch_size', 'model_dir')}))")
    assert same == {"seed": 0, "batch_size": 32, "model_dir": None}
