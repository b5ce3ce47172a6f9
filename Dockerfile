# The journey worker; the same image runs the HTTP ingestion server with another command
# (deploy/kubernetes/ingestion.yaml). Build: docker build -t journeys:0.4 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    JOURNEYS_DIR=/etc/journeys/catalog \
    JOURNEYS_DATA_DIR=/var/lib/journeys \
    JOURNEYS_METRICS_ADDRESS=0.0.0.0:9464

WORKDIR /app
COPY pyproject.toml README.md ./
COPY journeys/ journeys/
COPY workflows/ workflows/
COPY activities/ activities/
COPY ingestion/ ingestion/
COPY operate/ operate/
COPY service/ service/
COPY telemetry/ telemetry/
COPY connection/ connection/
COPY cli/ cli/
COPY worker.py starter.py ./
COPY examples/ /etc/journeys/catalog/
RUN pip install . \
    && useradd --uid 10001 --no-create-home journeys \
    && mkdir -p /var/lib/journeys && chown journeys /var/lib/journeys
USER 10001

# Prometheus metrics (the SDK's and the project's), and the HTTP API when it runs `serve`.
EXPOSE 9464 8000
# SIGTERM: the worker stops polling, lets the activities under way finish (5 s), then exits.
STOPSIGNAL SIGTERM
CMD ["python", "worker.py"]
