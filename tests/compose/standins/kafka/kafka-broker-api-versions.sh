#!/bin/sh
# kafka-broker-api-versions.sh, short: the same tool class as the official script (Kafka 4.x: kafka-tools).
exec java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
