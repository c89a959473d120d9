"""TF Serving: the model-folder layout and models.config (``layout``), and request building
for ``bin/serving_client`` (``client``)."""
