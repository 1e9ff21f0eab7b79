"""Host-side build pipeline: base disk, Packer run, artifact finalisation."""
