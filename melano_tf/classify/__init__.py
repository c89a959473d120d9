"""The use-case: a lesion classifier on an imbalanced set, with and without synthetic melanoma.

Modules: ``model`` (networks), ``data`` (the training set of each regime), ``metrics`` (pure
numpy), ``train`` (train + evaluate on the real test split), ``export`` (SavedModel for serving),
``experiment`` (the imbalance experiment end to end).
"""
