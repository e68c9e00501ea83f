#!/bin/sh
# kafka-server-start.sh, short: the broker's main class on the image's classpath, heap from KAFKA_HEAP_OPTS
# (the official default), log4j2 to stdout.
[ $# -ge 1 ] || { echo "USAGE: $0 server.properties" >&2; exit 1; }
# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS / KAFKA_OPTS are word lists, as in the official scripts
exec java ${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G} -XX:+UseG1GC -Djava.awt.headless=true ${KAFKA_OPTS:-} \
    -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -cp '/opt/kafka/libs/*' kafka.Kafka "$@"
