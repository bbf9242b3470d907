# GPU trainer: a Celery worker on the "training" queue (reward model, PPO,
# rejection sampling) on the base image's CUDA build of torch.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Everything in requirements.txt except torch, which the base image provides
# with CUDA; pip would otherwise replace it.
COPY requirements.txt ./
RUN grep -v '^torch==' requirements.txt > /tmp/req.txt \
    && pip install --no-cache-dir -r /tmp/req.txt \
    && rm /tmp/req.txt

COPY . .

# uid 1000 matches the web image, so shared volumes get one owner.
RUN mkdir -p /data/exports /data/checkpoints && chown -R 1000:1000 /data
