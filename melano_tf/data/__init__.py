"""Data layer: readers for dermoscopy layouts, preprocessing cache, tf.data pipeline, phantoms."""
