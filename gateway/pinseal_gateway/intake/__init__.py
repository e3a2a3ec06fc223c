"""Transports that feed the pipeline: MQTT today (`ingest.mqtt`); BLE and serial later, same interface."""
