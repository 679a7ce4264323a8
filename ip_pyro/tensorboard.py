"""TensorBoard logging of a training run (``ip-pyro train --tensorboard``; needs the optional ``tensorboard``
package: ``pip install 'ip-pyro[tensorboard]'``).

Every numeric entry of every ``metrics.jsonl`` record becomes a scalar at its step (``loss``, ``lr``, the
validation metrics, ``order_entropy``, the RWS cost); at each validation of an IP run the guide's insertion order
on a few training sequences is drawn as a figure (``order``: mean insertion rank by position and length, and by
token). Events go to ``OUT/tensorboard``: ``tensorboard --logdir OUT``.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

__all__ = ["TensorBoardLog"]


class TensorBoardLog:
    """Scalars and order figures of one run, written under ``folder``."""

    def __init__(self, folder):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("--tensorboard needs the tensorboard package; pip install 'ip-pyro[tensorboard]' (or "
                             "tensorboard)") from None
        self.folder = Path(folder)
        self.writer = SummaryWriter(str(self.folder))

    def scalars(self, record: dict) -> None:
        """Every finite number of a metrics record, at its ``step``."""
        step = record.get("step")
        if step is None:
            return
        for name, value in record.items():
            if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                self.writer.add_scalar(name, value, step)

    def order_figure(self, guide, batch, step: int, *, num_draws: int = 16, token_names=None) -> None:
        """The guide's insertion order on ``batch`` (``num_draws`` draws) as the figure ``order``."""
        from ip_pyro.orders import orders_to_ranks
        from ip_pyro.plots import rank_heatmap_figure

        with torch.no_grad():
            orders = guide.order_distribution(batch).sample((num_draws,))  # [S, B, L]
        width = orders.shape[-1]
        steps = orders_to_ranks(orders.reshape(-1, width)).reshape(orders.shape).float().cpu().numpy()
        padding = (torch.arange(width) >= batch.lengths.cpu().unsqueeze(-1)).numpy()
        steps[:, padding] = math.nan
        tokens = batch.tokens.cpu().numpy()
        name = (lambda token: str(token_names[token])) if token_names else None
        self.writer.add_figure("order", rank_heatmap_figure(steps, tokens, token_class=name), step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
