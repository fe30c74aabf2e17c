"""ganmatch: remove confounding from face datasets by matching images in a GAN's latent space."""

__version__ = "0.1.0"
