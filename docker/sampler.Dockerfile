# GPU samplers: Celery workers on the "sampler" and "sampler_live" queues that generate with vLLM.
#
# vLLM 0.19.1 is the first release that runs on transformers 5 (up to 0.19.0 it requires
# transformers < 5). training/ saves checkpoints with transformers 5 (requirements.txt), whose
# tokenizer_config.json names the class "TokenizersBackend", which transformers 4 does not have.
# docker-compose.yml's `served` profile runs the same image; tests/test_gpu_images.py keeps the two
# tags and requirements-gpu.txt's vllm pin equal, and checks training's saved files against it.
FROM vllm/vllm-openai:v0.19.1

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
