"""MQTT → Kafka bridge: persistent sessions split by building, acknowledgement after Kafka delivery,
dead letters for every input it cannot forward."""

from __future__ import annotations

from apt_energy.bridge.acks import AckQueue
from apt_energy.bridge.bridge import Bridge, BridgeOptions, KafkaTopics, mqtt_options, part_client_id
from apt_energy.bridge.kafka_sink import KafkaSink
from apt_energy.bridge.mqtt_source import MqttOptions, MqttSource, end_session
from apt_energy.bridge.partition import Part, Partition
from apt_energy.bridge.routing import Route, dead_letter_value, route
from apt_energy.bridge.stats import BridgeStats

__all__ = ["AckQueue", "Bridge", "BridgeOptions", "BridgeStats", "KafkaSink", "KafkaTopics", "MqttOptions",
           "MqttSource", "Part", "Partition", "Route", "dead_letter_value", "end_session", "mqtt_options",
           "part_client_id", "route"]
