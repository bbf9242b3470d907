# GPU trainer: a Celery worker on the "training" queue (reward model, PPO,
# rejection sampling). It builds on the same vLLM image as the sampler, so that
# PPO and rejection sampling can generate their rollouts with vLLM
# (`--rollout-engine vllm`, training/rollout_engine.py); that image brings the
# CUDA build of torch that vLLM pins.
FROM vllm/vllm-openai:v0.19.1

# The base image starts the OpenAI-compatible server; compose runs Celery instead.
ENTRYPOINT []

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Everything in requirements.txt except torch, which the base image provides
# with CUDA (and vLLM pins); pip would otherwise replace it.
COPY requirements.txt ./
RUN grep -v '^torch==' requirements.txt > /tmp/req.txt \
    && pip install --no-cache-dir -r /tmp/req.txt \
    && rm /tmp/req.txt

COPY . .

# uid 1000 matches the web image, so shared volumes get one owner.
RUN mkdir -p /data/exports /data/checkpoints && chown -R 1000:1000 /data
