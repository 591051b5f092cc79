"""Machine profiles shipped with covmocks, as YAML data (format: docs/campaigns.md)."""
