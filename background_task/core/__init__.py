"""Layer 1, the foundations: task states, exceptions, settings, retry policy,
schedule and recurrence maths, argument serialization and the signals.

Imports nothing else of the package and no models; only ``conf`` reads
Django's settings (lazily). Every other layer may import from here.
"""
