"""What users import for their own property-based tests of calisim: hypothesis strategies and
pure reference models that state Calico's semantics without a datastore."""
