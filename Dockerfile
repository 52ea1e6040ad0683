# ICT Signal Bot image. Build and run with compose:  cp .env.example .env && docker compose up -d --build
# Details (volume, backups, upgrades): docs/self-hosting.md
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BOT_DATA_DIR=/data

WORKDIR /app

# A dedicated unprivileged user owns the data volume; the code stays root-owned and read-only to it.
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin bot \
    && mkdir /data \
    && chown bot:bot /data

# The same pinned file `python3 dev.py run` installs; copied first so code changes reuse this layer.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY . .

USER bot
# Build matplotlib's font cache now rather than on every first start.
RUN python -c "import matplotlib.pyplot"

VOLUME ["/data"]

# No network needed: the bot process is alive and /data is writable (the bot writes no heartbeat file).
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "deploy/healthcheck.py"]

# SIGTERM stops polling and closes the stores cleanly.
STOPSIGNAL SIGTERM
CMD ["python", "bot.py"]
