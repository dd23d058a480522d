"""Layer 5, an edge: integrations: the ``django.tasks`` backend
(``django_tasks``) and the HTTP tasks (``http``).

May import every layer below it; nothing in the layers imports it.
"""
