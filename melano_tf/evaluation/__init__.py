"""Running the metrics on trained generators: loading, sampling, caching and writing results.

``evaluate``  ``bin/evaluate``: sample every run's SavedModel, score it against one real set with
              :mod:`melano_tf.metrics` (real features cached by :mod:`melano_tf.metrics.feature_cache`),
              write metrics.json, plots and report.html
``context``   ``ImageSet`` (images plus features, descriptors... computed once) and ``Settings``:
              what both loops hand to the registry's hooks
``report``    report.html from metrics.json (one self-contained page)
``online``    ``OnlineEvaluator``: cheap SWD/KID/precision-recall/colour scores during training
              (:mod:`melano_tf.train.evaluation`)

The metrics themselves (images in, numbers out, no files) live in :mod:`melano_tf.metrics`.
"""
