"""pinseal-provision: from a blank board to a registered device."""
