"""melano_tf: high-resolution skin-lesion synthesis with GANs (MelanoGANs reproduction).

TensorFlow is chosen by an extra so that a CPU-only machine never downloads CUDA:
  pip install '.[cpu]'   # tensorflow-cpu
  pip install '.[gpu]'   # tensorflow[and-cuda] (Linux, NVIDIA GPUs)
"""

from setuptools import find_packages, setup

BINARIES = {
    "prepare_data": "melano_tf.cli.prepare_data:run",
    "train_lapgan": "melano_tf.cli.train:run_lapgan",
    "train_dcgan": "melano_tf.cli.train:run_dcgan",
    "train_classifier": "melano_tf.cli.train_classifier:run",
    "imbalance_experiment": "melano_tf.cli.imbalance_experiment:run",
    "serving_client": "melano_tf.cli.serving_client:run",
    "synthesize": "melano_tf.cli.synthesize:run",
    "evaluate": "melano_tf.cli.evaluate:run",
}

setup(
    name="melano_tf",
    version="0.1.0",
    description="Skin-lesion synthesis with DCGAN, LAPGAN and a modified LAPGAN (Keras 3 / TensorFlow)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["melano_tf", "melano_tf.*"]),
    install_requires=[
        "keras>=3.0",
        "numpy>=1.26",
        "scipy>=1.11",
        "scikit-image>=0.22",
        "absl-py>=2.0",
        "pillow>=10.0",
        "matplotlib>=3.7",
        "tensorboard>=2.16",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu>=2.16"],
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        "dev": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6"],   # -n 2: the suite on two workers
        "dicom": ["pydicom>=2.4"],   # DICOM images (ISIC 2020's train/*.dcm); optional
    },
    entry_points={"console_scripts": [f"{name}={target}" for name, target in BINARIES.items()]},
)
