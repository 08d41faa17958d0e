"""Online adversarial training with a metric attack: the standard defense to compare against.

Each iteration crafts adversarial versions of the batch against the current network (in eval
mode, so the attack sees the model it is trying to fool and BatchNorm statistics are not touched
by the attack), then trains on the clean and the adversarial batch with the baseline's loss:
0.5 * L(clean) + 0.5 * L(adversarial), the mixed objective of Goodfellow et al. that keeps clean
accuracy, as used for re-ID by Bouniot et al. ("Vulnerability of person re-identification models
to metric adversarial attacks", CVPR-W 2020). The card is in ``reidbench.models.advtrain``.

The default attack is SMA (the self metric attack needs no labels or guides, so it can be crafted
on any batch) with eps 5/255, 3 steps of 2/255 and its random start; M-IFGSM can be chosen with
the recipe option ``attack=mifgsm`` (its guides are the other images of the same identity in the
P x K batch).
"""

from __future__ import annotations

from typing import Any

import torch

from reidbench.train.registry import register_recipe
from reidbench.train.trainer import Recipe, TrainContext, reid_loss


@register_recipe
class AdvTrainRecipe(Recipe):
    """Clean + adversarial batches, half weight each; the adversary is re-crafted every step."""

    name = "advtrain"

    def __init__(self, attack: str = "sma", eps: float = 5.0, step: float = 2.0, steps: int = 3,
                 adv_weight: float = 0.5, **hparams: Any) -> None:
        super().__init__(attack=attack, eps=eps, step=step, steps=steps, adv_weight=adv_weight, **hparams)
        self.attack, self.eps, self.step_size, self.steps, self.adv_weight = attack, eps, step, steps, adv_weight

    def craft(self, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        # imported here so that `import reidbench.train` does not pull in torchattacks
        from reidbench.attacks import AttackContext, create_attack

        model = ctx.model
        model.eval()
        try:
            atk = create_attack(self.attack, model, eps=self.eps, step=self.step_size, steps=self.steps)
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.gen))
            context = AttackContext(seed=seed)
            if getattr(atk, "uses_guides", False):
                with torch.no_grad():
                    context.guide_feats = model(x)
                context.guide_pids = y
            atk.set_context(context)
            index = torch.arange(len(x), device=x.device)
            adv = atk(x, y if getattr(atk, "uses_labels", False) else None, index=index)
        finally:
            model.train()
        return adv.detach()

    def step(self, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> dict[str, float]:
        opt = ctx.optimizers[0]
        adv = self.craft(x, y, ctx)
        out_clean = ctx.model.forward_train(x)
        out_adv = ctx.model.forward_train(adv)
        loss_clean = reid_loss(out_clean, y, ctx.cfg)
        loss_adv = reid_loss(out_adv, y, ctx.cfg)
        loss = (1 - self.adv_weight) * loss_clean + self.adv_weight * loss_adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "adv": loss_adv.item()}
