"""The shared core every layer stands on: the message contract, topics, the error tree, broker and
Kafka logins, backoff, logs, metrics. It imports nothing of the project but ``apt_energy.config``."""
