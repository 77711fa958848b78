"""Variational autoencoders of cell images."""

from viscy_models.vae.beta_vae_25d import BetaVae25D
from viscy_models.vae.beta_vae_monai import BetaVaeMonai

__all__ = ["BetaVae25D", "BetaVaeMonai"]
