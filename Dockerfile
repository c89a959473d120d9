# melano_tf on NVIDIA GPUs: TensorFlow's GPU image (CUDA + cuDNN inside), the package, a non-root user.
#   docker build -t melano_tf .
#   docker run --gpus all -v $PWD/runs:/home/melano/runs -v /data/ISIC-2017:/data:ro melano_tf \
#     train_lapgan --flagfile=configs/mod.cfg --data_dir=/data --model_dir=runs/mod
FROM tensorflow/tensorflow:2.21.0-gpu

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 1000 melano
WORKDIR /home/melano
COPY --chown=melano:melano setup.py README.md ./
COPY --chown=melano:melano melano_tf ./melano_tf
COPY --chown=melano:melano bin ./bin
COPY --chown=melano:melano configs ./configs
# The base image already provides TensorFlow with CUDA: install melano_tf without a TF extra.
RUN python3 -m pip install . && python3 -c "import melano_tf, tensorflow"
USER melano
CMD ["train_lapgan", "--helpfull"]
