"""GAN losses and their penalties, as functions of the players' outputs.

``minimax``: the standard game's value, the players' losses and the GD-regulariser;
``wgan``: the Wasserstein critic's and generator's losses and the gradient penalty.
"""
