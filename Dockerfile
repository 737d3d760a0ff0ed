# One image for every cofi service; the command chooses which (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY simulator simulator
COPY cli cli
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1 LOG_JSON=true
ENTRYPOINT ["cofi"]
CMD ["--help"]
