# Tagwire: docker build -t tagwire . && docker run -v tagwire-data:/data -v $PWD/tagwire.toml:/config/tagwire.toml:ro tagwire
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TAGWIRE_CONFIG=/config/tagwire.toml

RUN useradd --create-home --uid 10001 tagwire \
    && mkdir -p /data /config \
    && chown tagwire:tagwire /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
RUN pip install .

USER tagwire
# the config's [storage].path should point into the volume, e.g. path = "/data/tagwire.db"
VOLUME ["/data"]
WORKDIR /data
CMD ["tagwire", "run"]
