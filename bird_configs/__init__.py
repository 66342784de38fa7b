"""Jinja2 templates for BIRD (bird.cfg.j2: a Calico node's config, rendered by calisim.node.bird)."""
