# One image for every process of taskproc; docker-compose.yml gives each service its command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Runtime dependencies only: no dev extras (no pytest, nx-27017 or aiosmtpd in the image).
COPY pyproject.toml ./
COPY contracts ./contracts
COPY service ./service
COPY infra ./infra
COPY taskproc ./taskproc
COPY gateway ./gateway
COPY consumers ./consumers
COPY projector ./projector
COPY scheduler ./scheduler
COPY cli ./cli
# Your own task types: packages with a `taskproc.task_types` entry point, as pip requirements
# from your package index (`docker compose build --build-arg TASK_PACKAGES="thumbnails==1.2"`).
ARG TASK_PACKAGES=""
RUN pip install '.[otlp]' $TASK_PACKAGES \
 && useradd --create-home --uid 10001 taskproc \
 && install -d -o taskproc -m 0700 /run/taskproc

USER taskproc

EXPOSE 8000
CMD ["python", "-m", "gateway"]
