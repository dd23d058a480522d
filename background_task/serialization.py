"""How task arguments are stored (``register_type``).

See :mod:`background_task.core.serialization`.
"""

from background_task.core.serialization import (
    TAG,
    Codec,
    dumps_params,
    loads_params,
    params_dumper,
    register_class,
    register_type,
    task_hash,
)

__all__ = [
    "TAG",
    "Codec",
    "dumps_params",
    "loads_params",
    "params_dumper",
    "register_class",
    "register_type",
    "task_hash",
]
