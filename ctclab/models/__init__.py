"""Acoustic models: the registry and every builder family.

Importing this package registers every builder (course, deep, attention, raw EMG, EMG typing, streaming) in
:data:`ctclab.models.registry.BUILDERS`, so :func:`ctclab.models.registry.build` finds a run's
builder by name. The builder modules import the registry; the registry imports none of them.
"""

from ctclab.models import attention, course, deep, raw_emg, streaming_models, typing_models  # noqa: F401  (registration)
