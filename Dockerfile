# One image for every cofi service; the command chooses which (see docker-compose.yml):
#   docker run cofi run tracker | run gpu-stage --stage denoise --host gpu-a | migrate | topics …
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY simulator simulator
COPY cli cli
# cryptography: MySQL 8's default caching_sha2_password needs RSA on a first, uncached login
# without TLS, and asyncmy only does that with it installed.
# /app is the distributor's working directory (faust keeps its table data there) and
# /data/audio the audio volume; a named volume takes the owner of the image's directory.
RUN pip install --no-cache-dir . cryptography \
    && useradd --create-home --uid 10001 cofi \
    && mkdir -p /data/audio && chown cofi:cofi /app /data/audio
USER 10001
# The commit the image was built from, for cofi_build_info (compose passes COFI_COMMIT).
ARG COFI_COMMIT=unknown
ENV PYTHONUNBUFFERED=1 LOG_JSON=true COFI_COMMIT=$COFI_COMMIT
ENTRYPOINT ["cofi"]
CMD ["--help"]
