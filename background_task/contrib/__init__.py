"""Ready-made tasks that ship with django-background-task."""
