"""Flags of the tools: bin/serving_client, bin/synthesize and bin/evaluate."""

from __future__ import annotations

from absl import flags

from melano_tf.flags import define_shared, once


@once
def define_serving_client_flags() -> None:
    """Flags of bin/serving_client."""
    flags.DEFINE_enum("protocol", "rest", ["rest", "grpc"], "REST (JSON, base64) or gRPC (PredictRequest).")
    flags.DEFINE_string("server", "localhost:8501", "REST host:port of tensorflow_model_server.")
    flags.DEFINE_string("grpc_server", "localhost:8500", "gRPC host:port of tensorflow_model_server.")
    flags.DEFINE_string("model_name", "lesion_classifier", "Model name in the server's models.config.")
    flags.DEFINE_integer("model_version", 0, "Version to ask for; 0: the latest the server has.")
    flags.DEFINE_string("signature_name", "", "Signature; default serving_default (images) or sample "
                        "(--sample_count).")
    flags.DEFINE_list("images", [], "JPEG/PNG files to classify.")
    flags.DEFINE_integer("sample_count", 0, "Ask a generator for this many images (its sample signature).")
    flags.DEFINE_integer("sample_seed", 0, "Seed of the generator request.")
    flags.DEFINE_boolean("dry_run", False, "Print the request instead of sending it.")
    flags.DEFINE_float("timeout", 30.0, "Seconds to wait for the server.")
    flags.DEFINE_string("output_dir", None, "Write the response (JSON, and PNGs of generated images) here.")


# ---------------------------------------------------------------------------- synthesize / evaluate (issue 4)

@once
def define_synthesize_flags() -> None:
    """Flags of bin/synthesize."""
    define_shared("string", "model_dir", None, "Run folder whose saved_model/ draws the images.")
    flags.DEFINE_string("saved_model", None, "A generator SavedModel folder (instead of --model_dir).")
    flags.DEFINE_integer("num_images", 64, "Images to draw.")
    flags.DEFINE_string("out", None, "Folder for the PNG files and manifest.json. Required.")
    flags.DEFINE_string("class", None, "Class to draw from a conditional generator (name or index); "
                        "default: the training set's class proportions.")
    define_shared("integer", "seed", 0, "Seed: batch j uses seed * 1000003 + j.")
    define_shared("integer", "batch_size", 32, "Images per call of the generator.")


@once
def define_eval_flags() -> None:
    """Flags of bin/evaluate."""
    flags.DEFINE_multi_string("model_dir", [], "Run folder to evaluate; repeat for several runs "
                              "(shown side by side).")
    define_shared("string", "data_dir", None, "Real images: a prepared cache (manifest.json) or an image "
                    "source prepared at the runs' resolution. Default: the first run's cache/.")
    flags.DEFINE_integer("num_samples", 2000, "Synthetic images per run (compare runs at equal counts).")
    flags.DEFINE_integer("max_real", 10000, "At most this many real training images.")
    flags.DEFINE_string("out", None, "Folder for metrics.json, plots and report.html. Required.")
    flags.DEFINE_list("features", ["inception", "random_conv"], "Feature extractors for FID/KID/memorization, "
                      "first available wins: inception, classifier:PATH, random_conv.")
    flags.DEFINE_string("inception_weights", None, "InceptionV3 no-top ImageNet weights (.h5); default: "
                        "Keras' cache. Never downloaded.")
    flags.DEFINE_string("stats_dir", None, "Cache of real-set features (default ~/.cache/melano_tf/stats).")
    flags.DEFINE_integer("msssim_pairs", 1000, "Random pairs for MS-SSIM, per set.")
    flags.DEFINE_integer("kid_subset_size", 1000, "KID subset size (subsets: 100).")
    define_shared("integer", "seed", 0, "Seed of sampling, pair and patch choices.")
    define_shared("integer", "batch_size", 32, "Images per call of a generator.")
