"""The campaign report: the page, its figures, its clustering section and the outlier search."""
