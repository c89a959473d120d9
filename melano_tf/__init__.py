"""melano_tf: high-resolution skin-lesion synthesis with GANs (MelanoGANs, arXiv 1804.04338)."""

__version__ = "0.1.0"
