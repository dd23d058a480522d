"""Custom status permissions for the endpoint tests."""


def logged_in(request):
    return request.user.is_authenticated


def own_tasks(request, task):
    return task.verbose_name == request.user.username


def allow_all(request, task=None):
    return True


def deny_all(request, task=None):
    return False
