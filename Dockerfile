# One image for every cofi service; the command chooses which (see docker-compose.yml):
#   docker run cofi run tracker | run gpu-stage --stage denoise --host gpu-a | migrate | topics …
# The base image is an argument: where no registry is reachable, one built here from Debian's
# packages (docs/operations.md) takes its place; it needs python3.11 with pip and venv.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
WORKDIR /app
# The locked dependencies first, in a layer of their own: a change to the project's code
# rebuilds only the layers below (the project itself, installed without dependencies).
# Every dependency pinned with its hash (requirements/services.lock, `make lock`), cryptography
# among them: MySQL 8's caching_sha2_password needs RSA on a first, uncached login without TLS.
COPY requirements/services.lock requirements/
RUN pip install --no-cache-dir --require-hashes -r requirements/services.lock \
    && useradd --create-home --uid 10001 cofi
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY simulator simulator
COPY cli cli
# /app is the distributor's working directory (faust keeps its table data there) and
# /data/audio the audio volume; a named volume takes the owner of the image's directory.
RUN pip install --no-cache-dir --no-deps . \
    && mkdir -p /data/audio && chown cofi:cofi /app /data/audio
USER 10001
# The commit the image was built from, for cofi_build_info (compose passes COFI_COMMIT).
ARG COFI_COMMIT=unknown
ENV PYTHONUNBUFFERED=1 LOG_JSON=true COFI_COMMIT=$COFI_COMMIT
ENTRYPOINT ["cofi"]
CMD ["--help"]
