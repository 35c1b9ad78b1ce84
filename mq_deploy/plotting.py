"""matplotlib for every plot of the package (optional: extra [plot]), imported only when drawing,
and figures as PNG bytes tagged as ours (so --force can tell our plots from a user's)."""

from __future__ import annotations

import io

from . import __version__
from .errors import MQDeployError
from .outputs import PNG_SOFTWARE


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MQDeployError("plots need matplotlib: pip install 'mq-deploy[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def figure_png(plt, fig, dpi: int = 110) -> bytes:
    """The figure as PNG bytes, tagged with our Software entry (mq_deploy.outputs.is_own_png), closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": f"{PNG_SOFTWARE} {__version__}"})
    plt.close(fig)
    return buffer.getvalue()
