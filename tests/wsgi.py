"""The test project's WSGI application (for tests that run a real gunicorn)."""

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
