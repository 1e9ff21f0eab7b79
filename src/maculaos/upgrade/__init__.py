"""A/B upgrades: the GRUB environment (slot choice and boot counting), the health gate, update
sources and the ``maculaos upgrade`` command. RAUC writes the slots and checks signatures."""
