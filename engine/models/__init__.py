"""Models shared by several topics (energies, couplings, exact references)."""
