"""RTN: round-to-nearest with min/max ranges, no transforms. The floor every recipe must beat."""


def transform(model, calib, config, progress=True):
    return {}
