"""The textbook path of the optimizer: AdamW written with `equations.adamw_step`, one tensor at a time.

`--textbook` runs the model through picochat/equations.py's plain functions and AdamW through this class,
so a debugger steps through every equation of a training step (Muon is written out already). The state
keeps torch's names, so checkpoints move freely between the two paths.
"""

from __future__ import annotations

import torch

from picochat.equations import adamw_step


class TextbookAdamW(torch.optim.Optimizer):
    """AdamW, each parameter updated by `equations.adamw_step` (same groups and state as torch's AdamW)."""

    @torch.no_grad()
    def step(self, closure=None) -> None:
        for group in self.param_groups:
            (beta1, beta2), wd = group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                m, v, t = state["exp_avg"], state["exp_avg_sq"], int(state["step"])
                theta, m_t, v_t = adamw_step(p, m, v, p.grad, t, group["lr"], beta1, beta2, group["eps"], wd)
                p.copy_(theta)
                m.copy_(m_t)
                v.copy_(v_t)


def use_textbook_adamw(optimizer) -> None:
    """Replace every torch AdamW inside a CombinedOptimizer by TextbookAdamW over the same groups."""
    for i, inner in enumerate(optimizer.optimizers):
        if isinstance(inner, torch.optim.AdamW):
            textbook = TextbookAdamW(inner.param_groups, inner.defaults)
            textbook.load_state_dict(inner.state_dict())
            optimizer.optimizers[i] = textbook
