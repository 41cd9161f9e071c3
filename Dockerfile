# The toolkit's image, for training on a cluster (python -m training.cluster) and for bulk jobs; TF Serving runs
# in its own official image. Build: docker build -t srgan-toolkit . (GPU: --build-arg TENSORFLOW='tensorflow[and-cuda]')
FROM python:3.11-slim-bookworm

# The photographs of the `photos` recipe (training/data/photos.py); never mate-backgrounds (evaluation only).
RUN apt-get update \
 && apt-get install -y --no-install-recommends lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 \
        plasma-workspace-wallpapers ukui-wallpapers \
 && rm -rf /var/lib/apt/lists/*

ARG TENSORFLOW=tensorflow
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY training training
COPY serving serving
COPY export export
COPY workflows workflows
RUN pip install --no-cache-dir "${TENSORFLOW}~=2.21.0" . && python -c "import training.run, serving.server"

# Not root; the manifests run it with a read-only root file system and HOME on a volume.
USER 1000:1000
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1
CMD ["python", "-m", "training.run", "--help"]
