# GPU sampler: a Celery worker on the "sampler" queue that generates with vLLM.
FROM vllm/vllm-openai:v0.11.0

# The base image starts the OpenAI-compatible server; compose runs Celery instead.
ENTRYPOINT []

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# requirements-gpu.txt replaces requirements.txt here: vLLM pins its own torch.
COPY requirements-gpu.txt ./
RUN pip install --no-cache-dir -r requirements-gpu.txt

COPY . .

# uid 1000 matches the web image, so shared volumes get one owner.
RUN mkdir -p /data/exports /data/checkpoints && chown -R 1000:1000 /data
