"""The clustering covariance of a campaign: the ensemble estimate, its statistics, the Gaussian
reference and the verdict."""
