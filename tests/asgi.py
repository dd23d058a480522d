"""The test project's ASGI application (for tests that run a real uvicorn)."""

from django.core.asgi import get_asgi_application

application = get_asgi_application()
