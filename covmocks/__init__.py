"""covmocks: mock galaxy catalogs for covariance campaigns.

Importing covmocks configures JAX for safe use on small CPUs before jax is imported
anywhere in the process (see ``covmocks.galaxies.jaxenv``).
"""

from covmocks.galaxies import jaxenv as _jaxenv

_jaxenv.configure()

__version__ = "0.1.0"
