"""Settings of the Django Channels peer: the fan-out path `rtctl bench fanout` measures, nothing else.

Every setting a run may want to change comes from the environment (see ../README.md).
"""
import os

SECRET_KEY = os.environ.get("PEER_DJANGO_SECRET_KEY", "rtctl-bench-peer-not-a-secret")
DEBUG = False
# The peer listens on loopback for a bench; "*" also lets clients without an Origin header (the bench)
# through AllowedHostsOriginValidator, as it would behind a proxy that sets ALLOWED_HOSTS for real.
ALLOWED_HOSTS = os.environ.get("PEER_ALLOWED_HOSTS", "*").split(",")

INSTALLED_APPS = ["daphne", "channels", "peerhub"]
ROOT_URLCONF = "peerhub.urls"
ASGI_APPLICATION = "peerhub.asgi.application"
# Org events are live only (nothing is stored), so the peer needs no database.
DATABASES = {}
USE_TZ = True

# The hub's shared secrets, under the names the bench scripts pass (`--jwt-secret`, `--api-key`).
JWT_SECRET = os.environ.get("PEER_JWT_SECRET", "bench-secret")
API_KEY = os.environ.get("PEER_API_KEY", "bench-key")

if os.environ.get("PEER_LAYER", "memory") == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": os.environ.get("PEER_REDIS_BACKEND", "channels_redis.core.RedisChannelLayer"),
            "CONFIG": {"hosts": [os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0")]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# A bench makes thousands of requests: logging each one would measure the terminal.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("PEER_LOG_LEVEL", "WARNING")},
}
