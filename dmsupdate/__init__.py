"""dmsupdate: keep a fleet of replicated linked-data servers up to date from S3."""
