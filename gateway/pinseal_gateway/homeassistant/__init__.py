"""Home Assistant MQTT discovery: the gateway's verified readings as Home Assistant sensors."""
